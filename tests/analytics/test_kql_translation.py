"""KQL translation for the local engine: the window as bound query parameters (one
translation for every window), the caches in memory and on disk (private, validated, off on
request), and queries translated while the flow logs are read."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb_kql
import pytest

from shared.adapters import kql_translation
from shared.adapters.country_db import lookup_countries
from shared.adapters.duckdb_engine import LocalEngine
from shared.analytics.catalog import Catalog, render_query
from shared.analytics.kql import WINDOW_DECLARATION
from shared.analytics.query import Window
from shared.services.analytics import analyze, prepare, resolve_window
from tests.analytics.conftest import Sample, enrichment

COUNT = WINDOW_DECLARATION + (
    "NTANetAnalytics | where FlowStartTime >= WindowStart and FlowStartTime < WindowEnd "
    "| count")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "kql-cache"
    monkeypatch.setenv(kql_translation.CACHE_ENV, str(folder))
    kql_translation.forget()
    yield folder
    kql_translation.forget()


@pytest.fixture
def translations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts duckdb-kql is actually asked to translate (a spy; it still translates)."""
    seen: list[str] = []
    real = duckdb_kql.to_sql

    def spy(kql: str, *args: object, **kwargs: object) -> object:
        seen.append(kql)
        return real(kql, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(duckdb_kql, "to_sql", spy)
    return seen


def test_one_translation_serves_every_window(sample: Sample, cache: Path,
                                             translations: list[str]) -> None:
    with LocalEngine() as engine:
        engine.ingest_flow_logs(sample.flow_dir, enrichment(sample), lookup_countries)
        whole = resolve_window(engine.data_range(), None, None)
        assert whole is not None
        half = Window(whole.start, whole.start + (whole.end - whole.start) / 2)
        counts = []
        for window in (whole, half, whole):
            result = engine.run(COUNT, window)
            assert result.error is None
            counts.append(result.rows[0]["Count"])
        (expected,), = engine.con.execute(
            'SELECT count(*) FROM "NTANetAnalytics" WHERE "FlowStartTime" >= $s AND '
            '"FlowStartTime" < $e', {"s": half.start.replace(tzinfo=None),
                                     "e": half.end.replace(tzinfo=None)}).fetchall()
        failed = engine.run(COUNT, None)  # a declared window needs one
    assert counts[0] == counts[2] > counts[1] == expected > 0
    assert [t for t in translations if t == COUNT] == [COUNT]
    assert failed.error is not None and "WindowStart" in failed.error


def test_the_disk_cache_is_used_and_checked(cache: Path, translations: list[str]) -> None:
    schema = {"T": ["x"]}
    query = "T | where x > 1 | count"
    sql, _ = kql_translation.translate(query, schema)
    [entry] = list(cache.glob("*.json"))
    assert json.loads(entry.read_text())["sql"] == sql
    kql_translation.forget()  # a new process, as far as memory goes
    assert kql_translation.translate(query, schema)[0] == sql
    assert translations == [query]  # the second came from disk
    entry.write_text('{"key": "not this one", "sql": "SELECT 666", "slots": []}')
    kql_translation.forget()
    assert kql_translation.translate(query, schema)[0] == sql  # a bad entry is not trusted
    assert json.loads(entry.read_text())["sql"] == sql  # and written again
    entry.write_text("{ truncated")
    kql_translation.forget()
    assert kql_translation.translate(query, schema)[0] == sql
    assert translations == [query] * 3


def test_the_disk_cache_must_be_private(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert kql_translation.cache_dir() == cache
    assert cache.stat().st_mode & 0o777 == 0o700
    cache.chmod(0o777)
    assert kql_translation.cache_dir() is None  # others could put SQL there
    monkeypatch.setenv(kql_translation.CACHE_ENV, "off")
    assert kql_translation.cache_dir() is None
    kql_translation.translate("T | count", {"T": ["x"]})  # works without a disk cache
    assert not list(cache.glob("*.json"))


def test_other_declared_parameters_are_translated_with_their_values(cache: Path) -> None:
    query = "declare query_parameters(Limit:long);\nT | where x > Limit | count"
    con = duckdb_kql.connect()
    con.execute("CREATE TABLE T AS SELECT range AS x FROM range(1, 11)")
    for limit, expected in ((5, 5), (8, 2)):
        sql, params = kql_translation.translate(query, {"T": ["x"]}, {"Limit": limit})
        assert list(params.values()) == [limit]  # bound, never spliced into the SQL
        assert con.execute(sql, params).fetchall() == [(expected,)]
    assert not list(cache.glob("*.json"))  # not cached: bound through duckdb-kql each time
    with pytest.raises(duckdb_kql.KqlSchemaError):
        kql_translation.translate(query, {"T": ["x"]})


def test_detections_are_translated_while_the_flow_logs_are_read(
        sample: Sample, detections: tuple[Catalog, dict[str, str]], cache: Path,
        translations: list[str]) -> None:
    config = sample.loaded.config
    assert config is not None
    catalog, queries = detections
    with LocalEngine() as engine:
        prepare(engine, catalog, queries, config=config, inventory=sample.inventory)
        assert engine.preparing is None  # not before the ingest lists its blobs
        engine.ingest_flow_logs(sample.flow_dir, enrichment(sample), lookup_countries)
        assert engine.preparing is not None
        engine.preparing.join(timeout=60)
        ahead = len(translations)
        window = resolve_window(engine.data_range(), None, None)
        assert window is not None
        report = analyze(engine, catalog, queries, config=config, window=window,
                         inventory=sample.inventory)
    assert ahead == len(catalog.detections)  # every detection's query, blast radius included
    assert len(translations) == ahead  # analyze translated nothing more
    assert report.complete
    texts = [render_query(d, queries[d.id], config, None, {
        s.subscription_id.lower() for s in sample.inventory.subscriptions.values()})
        for d in catalog.detections]
    assert set(translations) == set(texts)
    assert all(t.startswith(WINDOW_DECLARATION) and "let WindowStart" not in t for t in texts)


def test_a_window_in_the_text_still_works(sample: Sample, cache: Path) -> None:
    """Engines that cannot bind (Log Analytics, ADX) get the window as lets; the local engine
    runs those too (the tests and the LA fake do)."""
    start = datetime(2000, 1, 1, tzinfo=UTC)
    window = Window(start, start + timedelta(days=36500))
    text = ("let WindowStart = datetime(2000-01-01T00:00:00.0000000Z);\n"
            "let WindowEnd = datetime(2099-12-07T00:00:00.0000000Z);\n"
            "NTANetAnalytics | where FlowStartTime >= WindowStart and FlowStartTime < WindowEnd"
            " | count")
    with LocalEngine() as engine:
        engine.ingest_flow_logs(sample.flow_dir, enrichment(sample), lookup_countries)
        with_window = engine.run(COUNT, window)
        with_lets = engine.run(text, window)
    assert with_window.error is None and with_lets.error is None
    assert with_window.rows == with_lets.rows
    assert os.environ[kql_translation.CACHE_ENV] == str(cache)
