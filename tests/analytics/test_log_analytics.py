"""The detections through the real azure-monitor-query client against the HTTPS fake of the
Log Analytics query API, which executes the KQL it receives (duckdb-kql)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.log_analytics import LogAnalyticsEngine
from shared.analytics.query import QueryStatus
from shared.services.analytics import analyze
from tests.analytics.conftest import SampleExport, SampleRun
from tests.analytics.kql_fixtures import (
    CONFIG,
    SUBSCRIPTIONS,
    TABLE_ROWS,
    WINDOW,
    assert_fixture_findings,
    at,
)
from tests.fakes.log_analytics import FakeLogAnalytics, parse_timespan

WORKSPACE = "11111111-2222-3333-4444-555555555555"


class StaticCredential:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLogAnalytics]:
    with FakeLogAnalytics(TABLE_ROWS) as server:
        yield server


@pytest.fixture
def engine(fake: FakeLogAnalytics) -> Iterator[LogAnalyticsEngine]:
    fake.partial_error = None
    fake.fail_with = None
    fake.requests.clear()
    client = LogAnalyticsEngine.connect(StaticCredential(), WORKSPACE, endpoint=fake.url,
                                        connection_verify=fake.ca_path, retry_total=0)
    yield client
    client.close()


def test_all_detections_on_log_analytics(engine: LogAnalyticsEngine, fake: FakeLogAnalytics,
                                         detections) -> None:
    catalog, queries = detections
    report = analyze(engine, catalog, queries, config=CONFIG, window=WINDOW, inventory=None,
                     subscriptions=SUBSCRIPTIONS)
    assert report.stats["engine"] == "log_analytics"
    assert_fixture_findings(report)
    # the request: time window widened for ingestion delay, bearer token, escaped values
    assert len(fake.requests) == 5
    request = fake.requests[0]
    assert request.workspace == WORKSPACE and request.authorization == "Bearer fake-token"
    start, end = parse_timespan(request.timespan, WINDOW.end)
    assert start == WINDOW.start and end == WINDOW.end + timedelta(hours=2)
    malicious = next(r.query for r in fake.requests if "ThreatRanges" in r.query)
    assert '"lab \\"range\\""' in malicious


def test_timespan_applies_to_time_generated(engine: LogAnalyticsEngine,
                                            detections) -> None:
    catalog, queries = detections
    engine.ingestion_slack = timedelta(0)
    from shared.analytics.catalog import render_query

    text = render_query(catalog.get("risky_region"), queries["risky_region"], CONFIG, WINDOW,
                        SUBSCRIPTIONS)
    narrow = type(WINDOW)(WINDOW.start, at(15))
    result = engine.run(text, narrow)  # the flows at 09:02/09:05 were ingested at 09:10
    assert result.status is QueryStatus.OK
    assert {r["PublicIp"] for r in result.rows} >= {"198.51.100.23"}


def test_partial_result_is_never_clean(engine: LogAnalyticsEngine, fake: FakeLogAnalytics,
                                       detections) -> None:
    fake.partial_error = {"code": "PartialError", "message": "query exceeded the result limit",
                          "details": [{"code": "E_QUERY_RESULT_SET_TOO_LARGE",
                                       "message": "too large"}]}
    catalog, queries = detections
    report = analyze(engine, catalog, queries, config=CONFIG, window=WINDOW, inventory=None,
                     subscriptions=SUBSCRIPTIONS)
    statuses = {d: s["status"] for d, s in report.stats["detections"].items()}
    assert set(statuses.values()) == {"partial"}
    assert report.stats["complete"] is False
    assert "partial result" in report.stats["detections"]["cross_subscription"]["error"]
    assert any(f.detection == "cross_subscription" for f in report.findings)  # rows kept


def test_refused_query_is_failed_not_empty(engine: LogAnalyticsEngine, fake: FakeLogAnalytics,
                                           detections) -> None:
    fake.fail_with = (400, "BadArgumentError")
    catalog, queries = detections
    report = analyze(engine, catalog, queries, config=CONFIG, window=WINDOW, inventory=None,
                     subscriptions=SUBSCRIPTIONS)
    assert report.findings == []
    assert report.stats["complete"] is False
    detection = report.stats["detections"]["risky_region"]
    assert detection["status"] == "failed" and "BadArgumentError" in detection["error"]
    assert report.stats["detections"]["blast_radius"]["origins_incomplete"] is True


def test_semantic_error_from_the_engine_is_reported(engine: LogAnalyticsEngine) -> None:
    result = engine.run("NTANetAnalytics | where NoSuchColumn == 1", WINDOW)
    assert result.status is QueryStatus.FAILED
    assert "BadArgumentError" in (result.error or "")


# -- zts analyze --la-workspace ------------------------------------------------------------------


def test_cli_analyze_on_log_analytics(sample_run: SampleRun, sample_export: SampleExport,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``zts analyze --la-workspace ID``: DefaultAzureCredential (the fake's managed identity
    endpoint), the sample's enriched tables in the workspace, the same fingerprints as the
    flow-log run; a partial result exits 1 and says INCOMPLETE; usage errors exit 2."""
    from shared.adapters.analytics_files import SAMPLE_CONFIG
    from shared.sample.estate import ESTATE_JSON_PATH
    from tests.analytics.test_cli_analytics import zts

    window, exported = sample_export.window, sample_export.tables
    with FakeLogAnalytics(exported) as server:
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{server.url}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", "local-test")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_path)
        monkeypatch.setenv("ZTS_CA_BUNDLE", server.ca_path)
        monkeypatch.setenv("ZTS_LA_ENDPOINT", server.url)
        base = ("analyze", "--snapshot", ESTATE_JSON_PATH, "--config", SAMPLE_CONFIG,
                "--la-workspace", WORKSPACE, "--since", window.start.isoformat(),
                "--until", window.end.isoformat())
        code, out, err = zts(*base, "--json")
        assert code == 1, err  # findings
        document = json.loads(out)
        assert document["stats"]["engine"] == "log_analytics"
        assert document["stats"]["complete"] is True, document["stats"]
        assert [f["fingerprint"] for f in document["findings"]] == [
            f.fingerprint for f in sample_run.report.findings]
        assert server.token_requests[0]["resource"] == server.url  # the scope follows the endpoint
        assert {r.workspace for r in server.requests} == {WORKSPACE}
        assert all(r.authorization == "Bearer fake-la-token" for r in server.requests)
        server.partial_error = {"code": "PartialError", "message": "result truncated"}
        code, out, err = zts(*base)
        assert code == 1 and "INCOMPLETE" in err
    code, _, err = zts("analyze", "--snapshot", ESTATE_JSON_PATH, "--la-workspace", WORKSPACE)
    assert code == 2 and "--la-workspace needs --since" in err
