"""The Table Storage state adapter on Azurite: round trips, ETag races, queries."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.adapters.alert_state import TableAlertState
from shared.alerts.records import AlertRecord, ChannelState, Observation
from shared.errors import ConcurrencyConflict
from tests.alerts.conftest import T0, make_finding


def record(fingerprint: str = "f" * 32, detection: str = "risky_region", **changes: object
           ) -> AlertRecord:
    base = AlertRecord(fingerprint, detection, "/subscriptions/x/resourceGroups/rg", "title",
                       "high", 2, T0, T0, 1, finding={"title": "title"},
                       channels={"email": ChannelState(sent_at=T0, sent_severity="high",
                                                       recipients=("a@b.co",))})
    return replace(base, **changes)  # type: ignore[arg-type]


def test_round_trip_and_etag_races(state: TableAlertState) -> None:
    assert state.get("risky_region", "f" * 32) is None
    first = record()
    etag = state.insert(first)
    stored = state.get("risky_region", "f" * 32)
    assert stored is not None and stored.record == first and stored.etag == etag
    with pytest.raises(ConcurrencyConflict, match="created by another run"):
        state.insert(first)
    newer = state.replace(replace(first, seen_count=2), etag)
    with pytest.raises(ConcurrencyConflict, match="changed by another run"):
        state.replace(replace(first, seen_count=3), etag)  # stale etag: 412
    assert state.get("risky_region", "f" * 32).record.seen_count == 2  # type: ignore[union-attr]
    assert newer != etag


def test_queries_for_resolution_and_digest(state: TableAlertState) -> None:
    state.insert(record("a" * 32))
    state.insert(record("b" * 32, status="resolved", resolved_at=T0 + timedelta(hours=1)))
    state.insert(record("c" * 32, detection="drift", channels={
        "teams": ChannelState(held=True, held_since=T0)}))
    assert [s.record.fingerprint for s in state.open_records(["risky_region"])] == ["a" * 32]
    assert [s.record.fingerprint for s in state.open_records(["drift", "malicious"])] == \
        ["c" * 32]
    assert [s.record.fingerprint for s in state.held_records()] == ["c" * 32]
    resolved = state.get("risky_region", "b" * 32)
    assert resolved is not None and resolved.record.resolved_at == T0 + timedelta(hours=1)


def test_large_findings_are_kept_within_table_limits(state: TableAlertState) -> None:
    observation = Observation.of(make_finding(blob="x" * 200_000, title="t" * 5000))
    big = record(finding=observation.finding_dict(), title="t" * 5000,
                 resource_id="/subscriptions/" + "r" * 40_000)
    state.insert(big)
    stored = state.get("risky_region", "f" * 32)
    assert stored is not None
    assert stored.record.finding["evidence"]["truncated"] is True
    assert len(stored.record.title) == 2000 and len(stored.record.resource_id) == 30_000
