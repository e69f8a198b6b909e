"""The analytics timer: watermarked windows over the Log Analytics fake (which executes the KQL),
through the real LogsQueryClient; the watermark never advances over a partial result."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from azure.functions.timer import TimerRequest

from shared.adapters.analytics_files import load_detections
from shared.adapters.log_analytics import LogAnalyticsEngine
from shared.adapters.run_store import TableRunStore
from shared.local.azurite import Azurite
from shared.runtime import Runtime, set_runtime
from shared.services.scheduled_analytics import WATERMARK, scheduled_analytics
from shared.settings import Settings
from tests.analytics.kql_fixtures import CONFIG, TABLE_ROWS, WINDOW
from tests.fakes.log_analytics import FakeLogAnalytics
from tests.functions.indexed import BINDINGS, FUNCTIONS
from tests.services.test_discovery_azure import CRED

WORKSPACE = "11111111-2222-3333-4444-555555555555"


class Routed:
    """A router that keeps what it was given (the real one is tested in tests/alerts)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[object], list[str]]] = []

    def run(self, findings: object, detections_checked: object = None) -> object:
        self.calls.append((list(findings), list(detections_checked)))  # type: ignore[call-overload]
        return None


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLogAnalytics]:
    with FakeLogAnalytics(TABLE_ROWS) as server:
        yield server


@pytest.fixture
def store(azurite: Azurite) -> Iterator[TableRunStore]:
    with_store = TableRunStore.from_connection_string(azurite.connection_string,
                                                      f"w{uuid.uuid4().hex[:10]}")
    yield with_store
    with_store.close()


def engine(fake: FakeLogAnalytics) -> LogAnalyticsEngine:
    return LogAnalyticsEngine.connect(CRED, WORKSPACE, endpoint=fake.url,
                                      connection_verify=fake.ca_path, retry_total=0)


def test_windows_follow_the_watermark_and_findings_are_routed(fake: FakeLogAnalytics,
                                                              store: TableRunStore) -> None:
    fake.partial_error = None
    catalog, queries = load_detections()
    router = Routed()
    first = scheduled_analytics(engine(fake), catalog, queries, config=CONFIG, inventory=None,
                                watermarks=store, now=WINDOW.end, router=router)
    assert first.window.start == WINDOW.end - timedelta(hours=1)
    assert first.report.findings
    routed, checked = router.calls[0]
    assert len(routed) == len(first.report.findings) and "malicious_flow" in checked
    # the fixture holds a public address with no known country: risky_region could not fully
    # check it, so the run is incomplete, resolution skips that detection and the watermark stays
    assert "risky_region" not in checked and not first.advanced
    assert store.watermark(WATERMARK) is None
    quiet = WINDOW.end + timedelta(days=10)  # far from the fixture's flows: nothing to find
    store.set_watermark(WATERMARK, quiet)
    later = scheduled_analytics(engine(fake), catalog, queries, config=CONFIG, inventory=None,
                                watermarks=store, now=quiet + timedelta(hours=1))
    assert later.window.start == quiet  # continues where the last complete run ended
    assert later.report.findings == [] and later.report.complete and later.advanced
    assert store.watermark(WATERMARK) == quiet + timedelta(hours=1)
    capped = scheduled_analytics(engine(fake), catalog, queries, config=CONFIG, inventory=None,
                                 watermarks=store, now=quiet + timedelta(days=30))
    assert capped.window.start == quiet + timedelta(days=29)  # at most a day at once


def test_a_partial_result_keeps_the_watermark(fake: FakeLogAnalytics,
                                              store: TableRunStore) -> None:
    catalog, queries = load_detections()
    fake.partial_error = {"code": "PartialError", "message": "query exceeded limits"}
    try:
        result = scheduled_analytics(engine(fake), catalog, queries, config=CONFIG,
                                     inventory=None, watermarks=store, now=WINDOW.end)
    finally:
        fake.partial_error = None
    assert not result.report.complete and not result.advanced
    assert store.watermark(WATERMARK) is None  # the next run covers this window again


def test_the_timer_function_runs_the_catalog(fake: FakeLogAnalytics, azurite: Azurite,
                                             table_name: str) -> None:
    settings = Settings(storage_connection_string=azurite.connection_string,
                        inventory_table=table_name, table_prefix=f"t{uuid.uuid4().hex[:10]}",
                        la_workspace_id=WORKSPACE, la_endpoint=fake.url, ca_bundle=fake.ca_path)
    built = Runtime(settings, credential=CRED)
    set_runtime(built)
    try:
        before = len(fake.requests)
        FUNCTIONS["analytics_timer"](TimerRequest(past_due=False))
        assert len(fake.requests) > before  # the detections reached the workspace
        assert built.run_store().watermark(WATERMARK) is not None
    finally:
        set_runtime(None)
    [timer] = BINDINGS["analytics_timer"]
    assert timer["schedule"] == "%ZTS_ANALYTICS_SCHEDULE%"
