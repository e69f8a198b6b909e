"""The pure decision logic: routing, quiet hours, and the dedup/suppression/escalation rules,
driven with explicit times (no store, no network)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.alerts.dedup import (
    Action,
    claim_batch,
    decide,
    plan_observation,
    resolution_due,
    settle_failed,
    settle_resolution,
    settle_sent,
)
from shared.alerts.records import ChannelState, Observation
from shared.alerts.routing import digest_bound, in_quiet_hours, targets_for
from tests.alerts.conftest import T0, config_from, make_finding

DAY = timedelta(hours=24)
TTL = timedelta(minutes=15)
EVERYWHERE = frozenset({"email", "teams"})


def plan(prior, finding, now, *, token="t1", available=EVERYWHERE, digest=""):  # type: ignore[no-untyped-def]
    config = config_from()
    targets = targets_for(finding.detection, finding.severity, config)
    return plan_observation(prior, Observation.of(finding), targets, now=now,
                            window=config.window(finding.detection), available=available,
                            token=token, claim_ttl=TTL, digest=digest)


def sent(prior, finding, now, token="t1"):  # type: ignore[no-untyped-def]
    """Plan, then settle every claimed channel as accepted: one complete delivery."""
    first = plan(prior, finding, now, token=token)
    record = first.record
    for channel, decision in first.decisions.items():
        if decision.sends:
            record = settle_sent(record, channel, token, now, severity=finding.severity,
                                 reach=Observation.of(finding).reach)
    return first, record


def test_routes_are_a_union_and_severity_filtered() -> None:
    config = config_from()
    assert targets_for("drift", "high", config).channels == ("email", "teams")
    assert targets_for("drift", "low", config).channels == ("email",)
    low = targets_for("x", "low", config)
    assert low.email == ("secops@contoso.com",) and not low.teams
    assert low.routes == ("everything by email",)


def test_first_sighting_claims_every_channel() -> None:
    first = plan(None, make_finding(), T0)
    assert {c: d.action for c, d in first.decisions.items()} == {
        "email": Action.NEW, "teams": Action.NEW}
    for channel in ("email", "teams"):
        state = first.record.channel(channel)
        assert state.claim == "t1" and state.claim_until == T0 + TTL and state.sent_at is None
    assert first.record.seen_count == 1 and first.record.first_seen == T0


def test_repeat_within_window_is_suppressed_and_counted() -> None:
    finding = make_finding()
    _, record = sent(None, finding, T0)
    again = plan(record, finding, T0 + timedelta(hours=3), token="t2")
    assert {d.action for d in again.decisions.values()} == {Action.SUPPRESSED}
    assert again.decisions["email"].reason == "alerted 3h ago; suppressed for 21h more"
    assert again.record.seen_count == 2 and again.record.last_seen == T0 + timedelta(hours=3)
    assert again.record.channel("email").claim == ""  # nothing claimed


def test_window_expiry_sends_a_reminder_per_detection_window() -> None:
    finding = make_finding()
    _, record = sent(None, finding, T0)
    assert plan(record, finding, T0 + DAY - timedelta(seconds=1)).decisions[
        "email"].action is Action.SUPPRESSED
    later = plan(record, finding, T0 + DAY)
    assert later.decisions["email"].action is Action.REMINDER
    assert "still present 1d after the last alert" in later.decisions["email"].reason
    drift = make_finding("drift")
    _, record = sent(None, drift, T0)
    assert plan(record, drift, T0 + timedelta(hours=6)).decisions[
        "teams"].action is Action.REMINDER  # drift's own 6h window


def test_escalation_by_severity_and_by_reach() -> None:
    medium = make_finding(severity="medium", reached=2)
    _, record = sent(None, medium, T0)
    worse = plan(record, make_finding(severity="critical", reached=2), T0 + timedelta(hours=1))
    assert worse.decisions["email"].action is Action.ESCALATION
    assert worse.decisions["email"].reason == "severity rose from medium to critical"
    wider = plan(record, make_finding(severity="medium", reached=5), T0 + timedelta(hours=1))
    assert wider.decisions["teams"].action is Action.ESCALATION
    assert "now reaches 5 hosts (the last alert said 2)" in wider.decisions["teams"].reason
    calmer = plan(record, make_finding(severity="low", reached=1), T0 + timedelta(hours=1))
    assert calmer.decisions["email"].action is Action.SUPPRESSED  # lower is not an escalation


def test_a_live_claim_blocks_other_runs_and_an_expired_one_does_not() -> None:
    finding = make_finding()
    first = plan(None, finding, T0, token="run-a")
    racing = plan(first.record, finding, T0 + timedelta(minutes=1), token="run-b")
    assert {d.action for d in racing.decisions.values()} == {Action.IN_FLIGHT}
    assert racing.record.channel("email").claim == "run-a"  # untouched
    crashed = plan(first.record, finding, T0 + TTL + timedelta(seconds=1), token="run-c")
    assert crashed.decisions["email"].action is Action.NEW
    assert crashed.record.channel("email").claim == "run-c"


def test_failed_delivery_stays_retryable_and_says_so() -> None:
    finding = make_finding()
    first = plan(None, finding, T0)
    record = settle_sent(first.record, "email", "t1", T0, severity="high", reach=0)
    record = settle_failed(record, "teams", "t1", "HTTP 503")
    teams = record.channel("teams")
    assert teams.sent_at is None and teams.claim == "" and teams.failures == 1
    retry = plan(record, finding, T0 + timedelta(minutes=5), token="t2")
    assert retry.decisions["email"].action is Action.SUPPRESSED
    assert retry.decisions["teams"].action is Action.NEW
    assert "retry after 1 failed attempt(s): HTTP 503" in retry.decisions["teams"].reason


def test_unavailable_channel_is_not_claimed() -> None:
    first = plan(None, make_finding(), T0, available=frozenset({"email"}))
    assert first.decisions["teams"].action is Action.UNAVAILABLE
    assert first.record.channel("teams").claim == ""
    assert first.record.channel("email").claim == "t1"


def test_digest_bound_findings_are_held_once() -> None:
    low = make_finding(severity="low")
    held = plan(None, low, T0, digest="low findings are sent in the digest")
    assert held.decisions["email"].action is Action.HELD
    state = held.record.channel("email")
    assert state.held and state.held_since == T0 and state.recipients == ("secops@contoso.com",)
    again = plan(held.record, low, T0 + timedelta(minutes=10), digest="digest")
    assert again.decisions["email"].reason == "already waiting for the digest"
    record, claimed = claim_batch(again.record, ("email", "teams"), "d1", T0, TTL, "digest")
    assert claimed == ("email",)
    assert claim_batch(record, ("email",), "d2", T0, TTL, "digest")[1] == ()  # claimed by d1
    done = settle_sent(record, "email", "d1", T0, severity="low", reach=0)
    assert not done.channel("email").held and done.channel("email").sent_at == T0


def test_quiet_hours_span_midnight_in_their_time_zone() -> None:
    config = config_from("""channels: {email: {to: [a@contoso.com]}, teams: {}}
routes: [{email: true, teams: true}]
quiet_hours: {start: "22:00", end: "07:00", timezone: Europe/Paris}
""")
    quiet = config.quiet_hours
    at = lambda h, m=0: datetime(2026, 11, 22, h, m, tzinfo=UTC)  # noqa: E731  Paris = UTC+1
    assert in_quiet_hours(at(21, 0), quiet) and in_quiet_hours(at(2), quiet)
    assert not in_quiet_hours(at(20, 59), quiet) and not in_quiet_hours(at(6), quiet)
    assert digest_bound("medium", at(23), config) and not digest_bound("medium", at(12), config)
    assert not digest_bound("high", at(23), config) and not digest_bound("critical", at(23),
                                                                          config)
    assert digest_bound("low", at(12), config)  # the digest severities, whatever the hour


def test_resolution_grace_reopen_and_partial_notice() -> None:
    finding = make_finding()
    _, record = sent(None, finding, T0)
    seen = frozenset({record.fingerprint})
    assert not resolution_due(record, seen, T0 + DAY, timedelta(hours=1))
    assert not resolution_due(record, frozenset(), T0 + timedelta(minutes=30), timedelta(hours=1))
    assert resolution_due(record, frozenset(), T0 + timedelta(hours=2), timedelta(hours=1))
    now = T0 + timedelta(hours=2)
    claimed, channels = claim_batch(record, ("email", "teams"), "r1", now, TTL, "resolution")
    assert channels == ("email", "teams")
    half = settle_resolution(claimed, {"email": True, "teams": False}, "r1", now, EVERYWHERE)
    assert half.status == "open" and half.channel("email").resolution_sent_at == now
    assert claim_batch(half, ("email", "teams"), "r2", now, TTL, "resolution")[1] == ("teams",)
    closed = settle_resolution(half, {"teams": True}, "r2", now, EVERYWHERE)
    assert closed.status == "resolved" and closed.resolved_at == now
    back = plan(closed, finding, now + timedelta(hours=1), token="t9")
    assert {d.action for d in back.decisions.values()} == {Action.REOPENED}
    assert back.record.status == "open" and back.record.seen_count == 2


def test_channel_state_round_trips_through_json() -> None:
    state = ChannelState(sent_at=T0, sent_severity="high", sent_reach=3, sent_count=2, held=True,
                         held_since=T0, recipients=("a@b.co",), claim="x",
                         claim_until=T0 + TTL, claim_kind="alert", failures=1, last_error="e",
                         resolution_sent_at=T0)
    assert ChannelState.from_json(state.as_json()) == state
    assert ChannelState.from_json({}) == ChannelState()
    assert replace(state, claim_until=T0).claimed(T0) is False


def test_decide_never_sends_inside_a_claim_even_when_escalated() -> None:
    state = ChannelState(sent_at=T0, sent_severity="low", claim="other",
                         claim_until=T0 + TTL)
    decision = decide(state, channel="email", severity="critical", reach=9, now=T0,
                      window=DAY)
    assert decision.action is Action.IN_FLIGHT
