"""The detections on Azure Data Explorer through the real azure-kusto-data client against the
HTTPS fake of the ADX v2 query API (tests/fakes/adx.py), which executes the KQL it receives with
duckdb-kql: the same findings as the local engine, escaped values, partial results never clean,
and HTTP errors, throttling and malformed frames reported as failures."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.adx import AdxEngine
from shared.analytics.catalog import render_query
from shared.analytics.config import AnalyticsConfig, ThreatEntry
from shared.analytics.enrichment import tag_networks
from shared.analytics.kql import KqlValueError, quoted_name
from shared.analytics.query import QueryStatus, Window
from shared.policy.evaluator import NsgEvaluator
from shared.services.analytics import analyze
from tests.analytics.conftest import Sample, SampleExport, SampleRun
from tests.analytics.kql_fixtures import (
    CONFIG,
    SUB_A,
    SUB_C,
    SUBSCRIPTIONS,
    TABLE_ROWS,
    WINDOW,
    assert_fixture_findings,
)
from tests.fakes.adx import SERVICE_RESOURCE_ID, FakeAdx

DATABASE = "TrafficAnalytics"


class StaticCredential:
    """A token credential that records the scopes asked for (no close(): the engine must not
    close a credential it was lent)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("fake-token", int(time.time()) + 3600)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAdx]:
    with FakeAdx(TABLE_ROWS, database=DATABASE) as server:
        yield server


def connect(fake: FakeAdx, credential: StaticCredential | None = None,
            **options: Any) -> AdxEngine:
    options.setdefault("sleep", lambda seconds: None)
    return AdxEngine.connect(credential or StaticCredential(), fake.url, fake.database,
                             ca_bundle=fake.ca_path, **options)


@pytest.fixture
def engine(fake: FakeAdx) -> Iterator[AdxEngine]:
    fake.reset()
    with connect(fake) as client:
        yield client


def run_catalog(engine: AdxEngine, detections: Any, config: AnalyticsConfig = CONFIG) -> Any:
    catalog, queries = detections
    return analyze(engine, catalog, queries, config=config, window=WINDOW, inventory=None,
                   subscriptions=SUBSCRIPTIONS)


def test_all_detections_on_adx(fake: FakeAdx, detections: Any) -> None:
    fake.reset()
    credential = StaticCredential()
    with connect(fake, credential) as engine:
        report = run_catalog(engine, detections)
    assert report.stats["engine"] == "adx"
    assert_fixture_findings(report)
    # the requests: the configured database, a bearer token for the scope the cluster's cloud
    # metadata names, partial failures never deferred, a client request id per query
    assert len(fake.requests) == 5 and fake.metadata_requests >= 1
    request = fake.requests[0]
    assert request.database == DATABASE and request.authorization == "Bearer fake-token"
    assert credential.scopes[0] == (f"{SERVICE_RESOURCE_ID}/.default",)
    assert request.properties["Options"]["deferpartialqueryfailures"] is False
    assert request.headers["x-ms-client-request-id"].startswith("zts.analytics;")
    assert len({r.headers["x-ms-client-request-id"] for r in fake.requests}) == 5
    # the same escaped text as every other engine: no table alias when the names match
    malicious = next(r.csl for r in fake.requests if "ThreatRanges" in r.csl)
    assert '"lab \\"range\\""' in malicious
    assert malicious.startswith("let WindowStart = datetime(")


def test_same_findings_as_the_local_engine_on_the_sample(
        sample: Sample, sample_run: SampleRun, sample_export: SampleExport,
        detections: Any) -> None:
    """The sample flow logs, enriched locally, exported to the ADX fake under other table names
    (as Log Analytics data export may land them), analyzed through the SDK: every finding of
    the local run, with the same fingerprints and evidence."""
    window, exported = sample_export.window, sample_export.tables
    renamed = {"NTANetAnalytics": "nta-flows (export)", "NTAIpDetails": "NTA'IpDetails"}
    config = sample.loaded.config
    assert config is not None
    tags = sample.loaded.path(config.service_tags or "")
    from shared.adapters.analytics_files import load_service_tags

    evaluator = NsgEvaluator(sample.inventory,
                             service_tag_ranges=tag_networks(load_service_tags(tags)))
    with FakeAdx(exported, database="zts-nta", table_names=renamed) as server, \
            AdxEngine.connect(StaticCredential(), server.url, "zts-nta",
                              ca_bundle=server.ca_path, tables=renamed) as engine:
        catalog, queries = detections
        report = analyze(engine, catalog, queries, config=config, window=window,
                         inventory=sample.inventory, evaluator=evaluator)
        aliased = server.requests[0].csl
    assert aliased.startswith("let NTANetAnalytics = ['nta-flows (export)'];\n"
                              "let NTAIpDetails = ['NTA\\'IpDetails'];\n")
    local_report = sample_run.report
    assert report.stats["complete"] is True, report.stats
    assert [f.fingerprint for f in report.findings] == [
        f.fingerprint for f in local_report.findings]
    assert [json.dumps(f.as_dict(), sort_keys=True, default=str) for f in report.findings] == [
        json.dumps(f.as_dict(), sort_keys=True, default=str) for f in local_report.findings]


def test_hostile_values_are_escaped(engine: AdxEngine, fake: FakeAdx, detections: Any) -> None:
    hostile = 'x" | take 0 //\\'
    config = AnalyticsConfig(
        risky_countries=("IR", 'KP" or 1==1 //'),
        threats=(ThreatEntry(ipaddress.IPv4Network("198.18.0.0/15"), "Scanner", hostile),),
        allowed_pairs=((SUB_C, SUB_A), ("'; .drop table NTANetAnalytics", SUB_A)))
    report = run_catalog(engine, detections, config)
    scanner = next(f for f in report.findings if f.detection == "malicious_flow"
                   and f.evidence["threat_type"] == "Scanner")
    assert scanner.evidence["threat_description"] == hostile  # the value survived, verbatim
    assert {f.evidence["country"] for f in report.findings
            if f.detection == "risky_region"} == {"IR"}  # the odd country matched nothing
    text = next(r.csl for r in fake.requests if "ThreatRanges" in r.csl)
    assert '"x\\" | take 0 //\\\\"' in text
    assert '"KP\\" or 1==1 //"' in next(r.csl for r in fake.requests if "RiskyCountries" in r.csl)


def test_table_names_are_quoted_identifiers() -> None:
    assert quoted_name("NTA flows") == "['NTA flows']"
    assert quoted_name("a'b\\c") == "['a\\'b\\\\c']"
    for bad in ("", "x\ny", "tab\tname"):
        with pytest.raises(KqlValueError):
            quoted_name(bad)
    with pytest.raises(ValueError, match="unknown NTA table"):
        AdxEngine(None, "db", tables={"Flows": "x"})  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["limits", "has_errors", "cancelled", "completion_info",
                                  "truncation_warning"])
def test_partial_result_is_never_clean(engine: AdxEngine, fake: FakeAdx, detections: Any,
                                       kind: str) -> None:
    fake.partial = kind
    report = run_catalog(engine, detections)
    statuses = {d: s["status"] for d, s in report.stats["detections"].items()}
    assert set(statuses.values()) == {"partial"}, statuses
    assert report.stats["complete"] is False
    error = report.stats["detections"]["cross_subscription"]["error"]
    assert error.startswith("partial result: ")
    expected = {"limits": "LimitsExceeded", "has_errors": "completed with errors",
                "cancelled": "was cancelled", "completion_info": "E_QUERY_RESULT_SET_TOO_LARGE",
                "truncation_warning": "truncated"}[kind]
    assert expected in error
    assert any(f.detection == "cross_subscription" for f in report.findings)  # rows kept


def test_rows_before_an_inline_error_are_kept(engine: AdxEngine, fake: FakeAdx) -> None:
    fake.partial = "limits"
    result = engine.run("NTANetAnalytics | where SubType == 'FlowLog' | project SrcIp, "
                        "FlowStartTime, AllowedOutFlows", WINDOW)
    assert result.status is QueryStatus.PARTIAL
    assert len(result.rows) == len(TABLE_ROWS["NTANetAnalytics"]) - 1
    row = result.rows[0]
    assert row["FlowStartTime"].tzinfo is not None and isinstance(row["AllowedOutFlows"], int)


def test_a_clean_result_is_ok_with_typed_values(engine: AdxEngine) -> None:
    result = engine.run("NTANetAnalytics | summarize n=count(), latest=max(FlowStartTime), "
                        "kinds=make_set(FlowType) | extend ratio = 0.5", WINDOW)
    assert result.status is QueryStatus.OK and result.error is None
    (row,) = result.rows
    assert row["n"] == len(TABLE_ROWS["NTANetAnalytics"])
    assert row["latest"] == max(r["FlowStartTime"] for r in TABLE_ROWS["NTANetAnalytics"])
    assert "MaliciousFlow" in row["kinds"] and row["ratio"] == 0.5


@pytest.mark.parametrize(("status", "code"), [(400, "General_BadRequest"), (403, "Forbidden"),
                                              (500, "InternalServiceError"),
                                              (503, "ServiceUnavailable")])
def test_http_errors_fail_with_the_code(engine: AdxEngine, fake: FakeAdx, detections: Any,
                                        status: int, code: str) -> None:
    fake.fail_with = (status, code)
    report = run_catalog(engine, detections)
    assert report.findings == [] and report.stats["complete"] is False
    detection = report.stats["detections"]["risky_region"]
    assert detection["status"] == "failed"
    assert f"HTTP {status} {code}" in detection["error"], detection["error"]
    assert report.stats["detections"]["blast_radius"]["origins_incomplete"] is True


def test_throttling_is_retried_then_fails(fake: FakeAdx) -> None:
    fake.reset()
    waits: list[float] = []
    with connect(fake, throttle_retries=2, sleep=waits.append) as engine:
        fake.throttle = 2
        assert engine.run("NTAIpDetails | count", WINDOW).status is QueryStatus.OK
        assert waits == [0.0, 0.0]  # Retry-After: 0 honoured
        fake.throttle = 3
        result = engine.run("NTAIpDetails | count", WINDOW)
    assert result.status is QueryStatus.FAILED
    assert result.error == "ADX throttled the query (HTTP 429) 3 time(s); giving up"
    assert len(fake.requests) == 6


@pytest.mark.parametrize(("malformed", "message"), [
    ("not_json", "unreadable"), ("object", "unreadable"),
    ("no_completion", "without a DataSetCompletion frame"),
    ("no_header", "no DataSetHeader frame"), ("truncated", "Unexpected end of stream"),
    ("bad_row", "does not have")])
def test_malformed_frames_fail_never_clean(engine: AdxEngine, fake: FakeAdx, detections: Any,
                                           malformed: str, message: str) -> None:
    fake.malformed = malformed
    report = run_catalog(engine, detections)
    assert report.stats["complete"] is False and report.findings == []
    statuses = report.stats["detections"]
    assert {s["status"] for d, s in statuses.items() if d != "blast_radius"} == {"failed"}
    assert statuses["blast_radius"]["origins_incomplete"] is True  # no origins: not "clean"
    error = report.stats["detections"]["malicious_flow"]["error"]
    assert error.startswith("ADX response unreadable") and message in error, error


def test_semantic_error_and_unknown_database(engine: AdxEngine, fake: FakeAdx) -> None:
    result = engine.run("NTANetAnalytics | where NoSuchColumn == 1", WINDOW)
    assert result.status is QueryStatus.FAILED
    assert "HTTP 400 General_BadRequest" in (result.error or "")
    assert "Semantic error" in (result.error or "")
    with AdxEngine.connect(StaticCredential(), fake.url, "Other", ca_bundle=fake.ca_path) as other:
        failed = other.run("NTAIpDetails | count", WINDOW)
    assert failed.status is QueryStatus.FAILED and "'Other' does not exist" in (failed.error or "")


def test_tls_is_verified(fake: FakeAdx, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the fake's CA the cluster is unreachable (nothing is trusted blindly); the CA
    file works through ``ca_bundle`` even when REQUESTS_CA_BUNDLE names another bundle, and
    through REQUESTS_CA_BUNDLE alone."""
    fake.reset()
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    # a fresh authority (trailing path) is not in the SDK's cloud-metadata cache
    with AdxEngine.connect(StaticCredential(), fake.url + "/", fake.database) as untrusted:
        result = untrusted.run("NTAIpDetails | count", WINDOW)
    assert result.status is QueryStatus.FAILED
    assert result.error is not None and result.error.startswith("ADX unreachable")
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert fake.requests == []
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_path)
    with AdxEngine.connect(StaticCredential(), fake.url, fake.database) as by_env:
        assert by_env.run("NTAIpDetails | count", WINDOW).status is QueryStatus.OK


def test_the_engine_does_not_close_the_shared_credential(fake: FakeAdx) -> None:
    class Closable(StaticCredential):
        closed = False

        def close(self) -> None:
            self.closed = True

    credential = Closable()
    with connect(fake, credential) as engine:
        assert engine.run("NTAIpDetails | count", WINDOW).status is QueryStatus.OK
    assert credential.closed is False


def test_window_is_only_in_the_query(engine: AdxEngine, fake: FakeAdx, detections: Any) -> None:
    """ADX has no ingestion timespan: the same rendered text, whatever the window argument."""
    catalog, queries = detections
    text = render_query(catalog.get("risky_region"), queries["risky_region"], CONFIG, WINDOW,
                        SUBSCRIPTIONS)
    other = Window(WINDOW.start, WINDOW.end.replace(year=WINDOW.end.year + 1))
    assert engine.run(text, WINDOW).rows == engine.run(text, other).rows
    assert fake.requests[0].csl == fake.requests[1].csl == text


# -- settings and the Functions runtime ----------------------------------------------------------


def test_settings_choose_adx_when_the_cluster_is_set() -> None:
    from shared.settings import Settings, SettingsError

    la_only = Settings.from_env({"ZTS_LA_WORKSPACE_ID": "ws"})
    assert la_only.analytics_backend == "log_analytics"
    both = Settings.from_env({"ZTS_LA_WORKSPACE_ID": "ws",
                              "ZTS_ADX_CLUSTER_URI": "https://zts.westeurope.kusto.windows.net/",
                              "ZTS_ADX_DATABASE": "nta", "ZTS_ADX_FLOW_TABLE": "Flows"})
    assert both.analytics_backend == "adx" and both.require("analytics") is both
    assert both.adx_cluster_uri == "https://zts.westeurope.kusto.windows.net"
    assert both.adx_tables() == {"NTANetAnalytics": "Flows", "NTAIpDetails": "NTAIpDetails"}
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"ZTS_ADX_CLUSTER_URI": "https://c.kusto.windows.net"}).require(
            "analytics")
    assert any("ZTS_ADX_DATABASE is not set" in p for p in raised.value.problems)
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({}).require("analytics")
    assert "ZTS_ADX_CLUSTER_URI" in raised.value.problems[0]
    bad = Settings.from_env({"ZTS_ADX_CLUSTER_URI": "http://c.kusto.windows.net",
                             "ZTS_ADX_DATABASE": "d", "ZTS_ADX_IP_TABLE": "a\x00b"})
    with pytest.raises(SettingsError) as raised:
        bad.require()
    assert [p.split(" ")[0] for p in raised.value.problems] == ["ZTS_ADX_CLUSTER_URI",
                                                               "ZTS_ADX_IP_TABLE"]


def test_the_timer_runs_the_catalog_on_adx(azurite: Any, table_name: str) -> None:
    """The analytics timer with ZTS_ADX_* settings: the runtime builds the ADX engine (the
    workspace setting is ignored), the detections reach the cluster, the watermark advances
    only over a complete run and stays over a partial one."""
    import uuid

    from azure.functions.timer import TimerRequest

    from shared.runtime import Runtime, set_runtime
    from shared.services.scheduled_analytics import WATERMARK
    from shared.settings import Settings
    from tests.functions.indexed import FUNCTIONS

    quiet: dict[str, list[dict[str, Any]]] = {"NTANetAnalytics": [], "NTAIpDetails": []}
    with FakeAdx(quiet, database="nta", table_names={"NTANetAnalytics": "Flows"}) as server:
        settings = Settings(storage_connection_string=azurite.connection_string,
                            inventory_table=table_name,
                            table_prefix=f"t{uuid.uuid4().hex[:10]}",
                            la_workspace_id="ignored-when-adx-is-set",
                            adx_cluster_uri=server.url, adx_database="nta",
                            adx_flow_table="Flows", ca_bundle=server.ca_path)
        built = Runtime(settings, credential=StaticCredential())
        set_runtime(built)
        try:
            engine = built.analytics()[0]
            assert isinstance(engine, AdxEngine) and engine.tables["NTANetAnalytics"] == "Flows"
            server.partial = "has_errors"
            FUNCTIONS["analytics_timer"](TimerRequest(past_due=False))
            assert len(server.requests) == 4  # blast radius has no origins: no edge query
            assert built.run_store().watermark(WATERMARK) is None  # partial: not advanced
            server.partial = None
            FUNCTIONS["analytics_timer"](TimerRequest(past_due=False))
            assert built.run_store().watermark(WATERMARK) is not None
            assert all(r.database == "nta" and "['Flows']" in r.csl for r in server.requests)
        finally:
            set_runtime(None)


# -- zts analyze --adx-cluster -------------------------------------------------------------------


def test_cli_analyze_on_adx(sample_run: SampleRun, sample_export: SampleExport, tmp_path: Any,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``zts analyze --adx-cluster URI --adx-database DB``: DefaultAzureCredential (the managed
    identity endpoint of the fake), the sample's enriched tables in the cluster, the same
    fingerprints as the flow-log run; a partial result exits 1 and says INCOMPLETE."""
    from shared.adapters.analytics_files import SAMPLE_CONFIG
    from shared.sample.estate import ESTATE_JSON_PATH
    from tests.analytics.test_cli_analytics import zts

    window, exported = sample_export.window, sample_export.tables
    with FakeAdx(exported, database="nta", table_names={"NTAIpDetails": "IpDetails"}) as server:
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{server.url}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", "local-test")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_path)
        base = ("analyze", "--snapshot", ESTATE_JSON_PATH, "--config", SAMPLE_CONFIG,
                "--adx-cluster", server.url, "--adx-database", "nta",
                "--adx-ip-table", "IpDetails", "--since", window.start.isoformat(),
                "--until", window.end.isoformat())
        code, out, err = zts(*base, "--json")
        assert code == 1, err  # findings
        document = json.loads(out)
        assert document["stats"]["engine"] == "adx" and document["stats"]["complete"] is True
        assert [f["fingerprint"] for f in document["findings"]] == [
            f.fingerprint for f in sample_run.report.findings]
        assert server.token_requests[0]["resource"] == SERVICE_RESOURCE_ID
        assert all(r.authorization == "Bearer fake-adx-token" for r in server.requests)
        server.partial = "completion_info"
        code, out, err = zts(*base)
        assert code == 1 and "INCOMPLETE" in err
        assert "partial result" in out and "E_QUERY_RESULT_SET_TOO_LARGE" in out
    # usage errors exit 2 before anything is contacted
    for argv, message in [
            (("--adx-cluster", "https://c.kusto.windows.net", "--since", "2026-11-02"),
             "--adx-cluster needs --adx-database"),
            (("--adx-cluster", "https://c.kusto.windows.net", "--adx-database", "d"),
             "--adx-cluster needs --since"),
            (("--nta", tmp_path / "x.json", "--adx-database", "d"),
             "--adx-database needs --adx-cluster"),
            (("--adx-cluster", "http://c.kusto.windows.net", "--adx-database", "d", "--since",
              "2026-11-02"), "must be https://"),
            (("--adx-cluster", "https://c.kusto.windows.net", "--adx-database", "d", "--since",
              "2026-11-02", "--until", "2026-11-01"), "empty window")]:
        code, _, err = zts("analyze", "--snapshot", ESTATE_JSON_PATH, *argv)
        assert code == 2 and message in err, (argv, err)
