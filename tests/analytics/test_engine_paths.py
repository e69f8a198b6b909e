"""The local engine's shortcuts give the answers of the ordinary paths: the blast-radius edges
reduced in DuckDB, column-wise row conversion, cached translations, and the NTANetAnalytics
view (a table again as soon as exported rows are loaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.country_db import lookup_countries
from shared.adapters.duckdb_engine import LocalEngine, _rows, _value
from shared.analytics.blast_radius import EdgeMoments, EdgeMomentSource
from shared.analytics.catalog import Catalog
from shared.analytics.query import QueryResult, Window
from shared.analytics.schema import NET_ANALYTICS_COLUMNS, NTA_NET_ANALYTICS
from shared.policy.evaluator import NsgEvaluator
from shared.services.analytics import AnalysisReport, analyze, resolve_window
from tests.analytics.conftest import Sample, enrichment

ORIGINS = ("10.10.1.4", "10.10.2.4", "10.20.1.4", "10.30.1.4")


class RowsOnly:
    """The local engine seen through the plain QueryEngine port (no edge reduction)."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        self.name = engine.name

    def run(self, query: str, window: Window) -> QueryResult:
        return self.engine.run(query, window)


class BrokenReduction(RowsOnly):
    def edge_moments(self, query: str, window: Window) -> EdgeMoments:
        raise RuntimeError("no reduction today")


def _analyze(engine: Any, sample: Sample, detections: tuple[Catalog, dict[str, str]],
             window: Window) -> AnalysisReport:
    config = sample.loaded.config
    assert config is not None
    catalog, queries = detections
    return analyze(engine, catalog, queries, config=config, window=window,
                   inventory=sample.inventory, origins=ORIGINS,
                   evaluator=NsgEvaluator(sample.inventory))


def test_reduced_edges_give_the_same_report(sample: Sample, detections) -> None:
    with LocalEngine() as engine:
        engine.ingest_flow_logs(sample.flow_dir, enrichment(sample), lookup_countries)
        window = resolve_window(engine.data_range(), None, None)
        assert window is not None
        assert isinstance(engine, EdgeMomentSource)
        assert not isinstance(RowsOnly(engine), EdgeMomentSource)
        reduced = _analyze(engine, sample, detections, window).as_json()
        rows = _analyze(RowsOnly(engine), sample, detections, window).as_json()
        fallback = _analyze(BrokenReduction(engine), sample, detections, window).as_json()
    assert reduced == rows == fallback
    blast = [f for f in reduced["findings"] if f["detection"] == "blast_radius"]
    assert len(blast) >= len(ORIGINS) and any(f["evidence"]["reached"] for f in blast)
    assert reduced["stats"]["detections"]["blast_radius"]["rows"] > 0


def test_a_query_without_the_edge_columns_is_not_reduced(engine: LocalEngine) -> None:
    with pytest.raises(Exception):  # noqa: B017 - DuckDB's binder error
        engine.edge_moments("NTANetAnalytics | project SrcIp")


def test_rows_are_converted_as_cell_by_cell(engine: LocalEngine) -> None:
    relation = engine.con.sql("""
        SELECT * FROM (VALUES
            ('a', TIMESTAMP '2026-11-02 09:00:00.123456', '{"x": [1]}'::JSON,
             CAST(12 AS HUGEINT), 1.5::DECIMAL(4, 1), 2.0::DECIMAL(4, 1), 0.25::DOUBLE, true,
             [1, 2], DATE '2026-11-02', TIMESTAMPTZ '2026-11-02 10:00:00+01', 7::BIGINT),
            (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL))
        AS t(s, ts, j, h, d1, d2, f, b, l, dt, tz, i)""")
    names, kinds = list(relation.columns), [str(t) for t in relation.types]
    raw = relation.fetchall()
    expected = tuple({n: _value(v, k) for n, k, v in zip(names, kinds, row, strict=True)}
                     for row in raw)
    assert _rows(names, kinds, raw) == expected
    assert expected[0]["j"] == {"x": [1]} and expected[1]["s"] == ""
    assert _rows(names, kinds, []) == ()


def test_the_same_query_twice_is_translated_once(engine: LocalEngine) -> None:
    query = 'NTANetAnalytics | where FlowType == "Nothing" | count'
    first, second = engine.run(query), engine.run(query)
    assert first.error is None and first == second


def test_net_analytics_is_a_view_with_the_table_schema(sample: Sample, tmp_path: Path) -> None:
    with LocalEngine() as engine:
        engine.ingest_flow_logs(sample.flow_dir, enrichment(sample), lookup_countries)
        kinds = dict(engine.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = $t ORDER BY ordinal_position", {"t": NTA_NET_ANALYTICS}
        ).fetchall())
        assert list(kinds) == [c.name for c in NET_ANALYTICS_COLUMNS]
        rows = engine.con.execute(f'SELECT * FROM "{NTA_NET_ANALYTICS}"').fetchall()
        names = [d[0] for d in engine.con.description or []]
        exported = tmp_path / "nta.json"
        exported.write_text(json.dumps([dict(zip(names, r, strict=True)) for r in rows],
                                       default=str))
        # exported rows go into a real table again, on the same engine
        report = engine.ingest_nta(exported)
        assert report.tables[NTA_NET_ANALYTICS] == len(rows)
        assert report.rows_skipped.total == 0
    with LocalEngine() as fresh:
        expected = dict(fresh.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = $t ORDER BY ordinal_position", {"t": NTA_NET_ANALYTICS}
        ).fetchall())
    assert kinds == expected
