"""Shared fixtures for the analytics tests: the sample estate, its flow logs generated once per
session with the demo's parameters, and the sample analytics configuration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.analytics_files import (
    SAMPLE_CONFIG,
    LoadedConfig,
    load_analytics_config,
    load_detections,
    load_service_tags,
)
from shared.adapters.country_db import lookup_countries
from shared.adapters.duckdb_engine import IngestReport, LocalEngine
from shared.analytics.catalog import Catalog
from shared.analytics.enrichment import EnrichmentTables, tag_networks
from shared.analytics.query import Window
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.policy.evaluator import NsgEvaluator
from shared.sample.estate import ESTATE_JSON_PATH, load_estate
from shared.sample.flowlogs import FlowLogManifest, generate_flow_logs
from shared.services.analytics import AnalysisReport, analyze, resolve_window
from shared.services.demo import DEMO_START

DEMO_SEED = 7  # shared/services/demo.py: generate_flow_logs(rows, dir, start=DEMO_START,
DEMO_HOURS = 1  # hours=1, seed=7)


@dataclass
class Sample:
    rows: list[Any]
    inventory: Inventory
    manifest: FlowLogManifest
    flow_dir: Path
    loaded: LoadedConfig


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    rows = load_estate(ESTATE_JSON_PATH)
    flow_dir = tmp_path_factory.mktemp("sample-flowlogs")
    manifest = generate_flow_logs(rows, flow_dir, start=DEMO_START, hours=DEMO_HOURS,
                                  seed=DEMO_SEED)
    loaded = load_analytics_config(SAMPLE_CONFIG)
    assert loaded.config is not None, loaded.errors
    return Sample(rows, normalize(rows), manifest, flow_dir, loaded)


@pytest.fixture(scope="session")
def detections() -> tuple[Catalog, dict[str, str]]:
    return load_detections()


def enrichment(sample: Sample) -> EnrichmentTables:
    config = sample.loaded.config
    assert config is not None
    tags = load_service_tags(sample.loaded.path(config.service_tags or ""))
    return EnrichmentTables.build(sample.inventory, sample.rows, config, tags)


@dataclass
class SampleRun:
    report: AnalysisReport
    ingest: IngestReport


def run_sample(sample: Sample, detections: tuple[Catalog, dict[str, str]],
               flow_dir: Path | None = None, origins: tuple[str, ...] = ()) -> SampleRun:
    config = sample.loaded.config
    assert config is not None
    tags = load_service_tags(sample.loaded.path(config.service_tags or ""))
    with LocalEngine() as engine:
        ingest = engine.ingest_flow_logs(flow_dir or sample.flow_dir, enrichment(sample),
                                         lookup_countries)
        window = resolve_window(engine.data_range(), None, None)
        assert window is not None
        catalog, queries = detections
        report = analyze(engine, catalog, queries, config=config, window=window,
                         inventory=sample.inventory, origins=origins,
                         evaluator=NsgEvaluator(sample.inventory,
                                                service_tag_ranges=tag_networks(tags)))
    return SampleRun(report, ingest)


@pytest.fixture(scope="session")
def sample_run(sample: Sample, detections: tuple[Catalog, dict[str, str]]) -> SampleRun:
    return run_sample(sample, detections)


@dataclass
class SampleExport:
    """The sample flow logs enriched locally, as rows of NTANetAnalytics and NTAIpDetails (what
    Log Analytics would hold, or an ADX database after data export), and their time range."""

    window: Window
    tables: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="session")
def sample_export(sample: Sample) -> SampleExport:
    with LocalEngine() as local:
        local.ingest_flow_logs(sample.flow_dir, enrichment(sample), lookup_countries)
        window = resolve_window(local.data_range(), None, None)
        tables = {}
        for table in ("NTANetAnalytics", "NTAIpDetails"):
            cursor = local.con.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description or []]
            tables[table] = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    assert window is not None and tables["NTANetAnalytics"]
    return SampleExport(window, tables)


@pytest.fixture
def engine() -> Iterator[LocalEngine]:
    with LocalEngine() as local:
        yield local
