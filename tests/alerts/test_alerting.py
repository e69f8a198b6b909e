"""The alerting service end to end: real channel clients against the HTTPS fake, dedup state on
Azurite, an injected clock. Each test checks what was sent, what the state says, and the result."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from shared.adapters.acs_email import AcsEmailChannel
from shared.adapters.alert_state import TableAlertState
from shared.adapters.teams_webhook import TeamsWebhookChannel
from shared.alerts.ports import StoredRecord
from shared.alerts.records import AlertRecord
from shared.local.azurite import Azurite
from shared.services.alerting import AlertRouter
from tests.alerts.conftest import (
    T0,
    Clock,
    config_from,
    email_channel,
    make_finding,
    teams_channel,
)
from tests.fakes.notify import FakeNotify

QUIET = """
channels:
  email: {to: [secops@contoso.com]}
  teams: {}
routes:
  - email: true
    teams: true
quiet_hours: {start: "22:00", end: "07:00", timezone: UTC}
digest: {severities: [informational, low], max_items: 2}
"""


def record_of(state: TableAlertState, finding_detection: str, fingerprint: str) -> AlertRecord:
    stored = state.get(finding_detection, fingerprint)
    assert stored is not None
    return stored.record


def test_dedup_across_runs_counts_repeats(router: AlertRouter, fake: FakeNotify,
                                          state: TableAlertState, clock: Clock) -> None:
    finding = make_finding()
    first = router.route([finding])
    assert first.ok and first.counts() == {"email": {"sent": 1}, "teams": {"sent": 1}}
    assert len(fake.emails) == 1 and len(fake.cards) == 1
    for hours in (1, 2, 23):
        clock.now = T0 + timedelta(hours=hours)
        again = router.route([finding, finding])  # twice in one run counts once
        assert again.counts() == {"email": {"suppressed": 1}, "teams": {"suppressed": 1}}
    assert len(fake.emails) == 1 and len(fake.cards) == 1
    record = record_of(state, "risky_region", finding.fingerprint)
    assert record.seen_count == 4 and record.last_seen == T0 + timedelta(hours=23)
    assert record.channel("email").sent_at == T0 and record.channel("email").sent_count == 1
    assert fake.emails[0]["recipients"] == {"to": [{"address": "secops@contoso.com"}]}


def test_escalation_alerts_again_at_once(router: AlertRouter, fake: FakeNotify,
                                         clock: Clock) -> None:
    router.route([make_finding(severity="medium", reached=2)])
    clock.advance(minutes=10)
    wider = router.route([make_finding(severity="medium", reached=6)])
    assert wider.counts()["teams"] == {"escalated": 1, "sent": 1}
    assert wider.findings[0].channels[0].reason == "now reaches 6 hosts (the last alert said 2)"
    clock.advance(minutes=10)
    worse = router.route([make_finding(severity="critical", reached=6)])
    assert worse.findings[0].channels[0].reason == "severity rose from medium to critical"
    clock.advance(minutes=10)
    same = router.route([make_finding(severity="critical", reached=3)])
    assert same.counts()["email"] == {"suppressed": 1}
    assert len(fake.cards) == 3 and len(fake.emails) == 3
    assert fake.emails[2]["content"]["subject"].startswith("[zts] Escalated: CRITICAL")


def test_window_expiry_with_injected_clock(router: AlertRouter, fake: FakeNotify,
                                           clock: Clock) -> None:
    drift = make_finding("drift", identity=("rule zts-r1 changed",))
    router.route([drift])
    clock.now = T0 + timedelta(hours=5, minutes=59)
    assert router.route([drift]).counts()["teams"] == {"suppressed": 1}
    clock.now = T0 + timedelta(hours=6)  # drift's window is 6h
    reminder = router.route([drift])
    assert reminder.counts()["teams"] == {"sent": 1}
    assert reminder.findings[0].channels[0].kind == "reminder"
    assert fake.emails[-1]["content"]["subject"].startswith("[zts] Still present: HIGH drift")


@dataclass
class RacingState:
    """The real Table adapter, with both runs made to read before either writes: the first
    ``get`` of each thread waits at a barrier, so the race is certain, not likely."""

    inner: TableAlertState
    barrier: threading.Barrier
    waited: set[int] = field(default_factory=set)

    def get(self, detection: str, fingerprint: str) -> StoredRecord | None:
        found = self.inner.get(detection, fingerprint)
        if threading.get_ident() not in self.waited:
            self.waited.add(threading.get_ident())
            self.barrier.wait(timeout=10)
        return found

    def insert(self, record: AlertRecord) -> str:
        return self.inner.insert(record)

    def replace(self, record: AlertRecord, etag: str) -> str:
        return self.inner.replace(record, etag)

    def open_records(self, detections: Iterable[str]) -> list[StoredRecord]:
        return self.inner.open_records(detections)

    def held_records(self) -> list[StoredRecord]:
        return self.inner.held_records()


def _race(azurite: Azurite, table_name: str, fake: FakeNotify, clock: Clock) -> list[object]:
    """Two runs, each with its own clients, route the same finding at the same moment."""
    barrier = threading.Barrier(2)
    results: list[object] = []
    finding = make_finding()

    def run() -> None:
        with TableAlertState.from_connection_string(azurite.connection_string,
                                                    table_name) as store:
            email, teams = email_channel(fake), teams_channel(fake)
            router = AlertRouter(config_from(), RacingState(store, barrier), email, teams,
                                 clock=clock)
            results.append(router.route([finding]))
            email.close()
            teams.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_runs_send_exactly_once(azurite: Azurite, table_name: str, fake: FakeNotify,
                                           state: TableAlertState, clock: Clock) -> None:
    results = _race(azurite, table_name, fake, clock)  # both read "no record", both insert
    assert len(fake.emails) == 1 and len(fake.cards) == 1
    actions = sorted(tuple(c.action for c in r.findings[0].channels) for r in results)  # type: ignore[attr-defined]
    # the loser saw the winner's live claim, or (if it re-read after the winner settled) the
    # alert already sent: never a second send
    assert actions in ([("in_flight", "in_flight"), ("sent", "sent")],
                       [("sent", "sent"), ("suppressed", "suppressed")])
    record = record_of(state, "risky_region", make_finding().fingerprint)
    assert record.seen_count == 2 and record.channel("teams").sent_count == 1
    clock.advance(hours=25)  # window over: both read the same record and ETag, both replace
    fake.reset()
    results = _race(azurite, table_name, fake, clock)
    assert len(fake.emails) == 1 and len(fake.cards) == 1
    assert record_of(state, "risky_region", make_finding().fingerprint).seen_count == 4


def test_a_failing_channel_does_not_block_the_other(
        router: AlertRouter, fake: FakeNotify, state: TableAlertState, clock: Clock) -> None:
    fake.add_fault("POST", "/invoke", 503, times=100)
    findings = [make_finding(identity=(f"203.0.113.{i}",)) for i in range(4)]
    result = router.route(findings)
    assert not result.ok and len(fake.emails) == 4 and fake.cards == []
    assert result.counts() == {"email": {"sent": 4}, "teams": {"failed": 4}}
    teams = result.channels["teams"]
    assert teams.down and teams.failed == 2 and "HTTP 503" in teams.last_error
    assert fake.count("POST", "/invoke") == 6  # 2 deliveries x 3 attempts, then given up
    assert "not tried again until the next run" in result.findings[3].channels[1].reason
    for finding in findings:  # nothing marked sent on the failed channel; email is done
        record = record_of(state, "risky_region", finding.fingerprint)
        assert record.channel("teams").sent_at is None and record.channel("teams").claim == ""
        assert record.channel("email").sent_at == T0
    fake.reset()
    clock.advance(minutes=10)
    retry = router.route(findings)  # Teams is back: only Teams is retried
    assert retry.ok and retry.counts() == {"email": {"suppressed": 4}, "teams": {"sent": 4}}
    assert len(fake.cards) == 4 and fake.emails == []


def test_not_configured_channel_is_reported_and_stays_retryable(
        state: TableAlertState, email: AcsEmailChannel, fake: FakeNotify, clock: Clock) -> None:
    router = AlertRouter(config_from(), state, email, None, clock=clock)
    result = router.route([make_finding()])
    assert result.counts() == {"email": {"sent": 1}, "teams": {"failed": 1}}
    assert "teams channel is not configured" in result.findings[0].channels[1].reason
    assert not result.channels["teams"].configured and not result.ok


def test_a_crashed_run_leaves_a_claim_that_expires(
        state: TableAlertState, fake: FakeNotify, clock: Clock) -> None:
    """A run that claimed and died before settling: the next run within the claim's lifetime
    keeps quiet; after it, the alert is sent (it was never marked sent)."""
    finding = make_finding()
    crashed = AlertRouter(config_from(), state, clock=clock)  # claims, then finds no channel
    from shared.alerts.dedup import plan_observation
    from shared.alerts.records import Observation
    from shared.alerts.routing import targets_for

    plan = plan_observation(None, Observation.of(finding),
                            targets_for("risky_region", "high", crashed.config), now=T0,
                            window=timedelta(hours=24), available=frozenset({"email", "teams"}),
                            token="dead", claim_ttl=timedelta(minutes=15))
    state.insert(plan.record)
    email, teams = email_channel(fake), teams_channel(fake)
    router = AlertRouter(config_from(), state, email, teams, clock=clock)
    clock.advance(minutes=5)
    assert router.route([finding]).counts() == {"email": {"in_flight": 1},
                                                "teams": {"in_flight": 1}}
    clock.advance(minutes=11)
    assert router.route([finding]).counts() == {"email": {"sent": 1}, "teams": {"sent": 1}}
    assert len(fake.emails) == 1 and len(fake.cards) == 1
    email.close()
    teams.close()


def test_low_findings_go_in_one_digest_per_run(router: AlertRouter, fake: FakeNotify,
                                               state: TableAlertState, clock: Clock) -> None:
    lows = [make_finding(severity="low", identity=(f"ip{i}",), title=f"low {i}")
            for i in range(5)]
    result = router.route([*lows, make_finding(severity="high")])
    assert result.counts()["email"] == {"digest_sent": 1, "held": 5, "sent": 1}
    assert len(fake.emails) == 2  # the high alert + one digest
    digest = fake.emails[1]["content"]
    assert digest["subject"] == "[zts] Digest: 5 findings (5 low)"
    assert fake.cards and len(fake.cards) == 1  # lows do not route to Teams (min medium)
    (batch,) = result.batches
    assert (batch.kind, batch.channel, batch.destination, len(batch.fingerprints)) == (
        "digest", "email", "secops@contoso.com", 5)
    clock.advance(hours=1)
    again = router.route(lows)
    assert again.counts()["email"] == {"suppressed": 5} and not again.batches
    assert len(fake.emails) == 2
    assert state.held_records() == []


def test_quiet_hours_hold_medium_until_they_end(state: TableAlertState, fake: FakeNotify,
                                                email: AcsEmailChannel,
                                                teams: TeamsWebhookChannel) -> None:
    night = Clock(T0.replace(hour=23))
    router = AlertRouter(config_from(QUIET), state, email, teams, clock=night)
    mediums = [make_finding(severity="medium", identity=(f"m{i}",)) for i in range(3)]
    result = router.route([*mediums, make_finding(severity="critical")])
    assert result.counts() == {"email": {"digest_held": 1, "held": 3, "sent": 1},
                               "teams": {"digest_held": 1, "held": 3, "sent": 1}}
    assert len(fake.emails) == 1 and len(fake.cards) == 1  # only the critical one, at night
    assert {b.action for b in result.batches} == {"held"}
    night.now = (T0 + timedelta(days=1)).replace(hour=3)
    assert router.route(mediums).counts() == {"email": {"digest_held": 1, "suppressed": 3},
                                              "teams": {"digest_held": 1, "suppressed": 3}}
    night.now = (T0 + timedelta(days=1)).replace(hour=7, minute=5)
    morning = router.route([])
    assert morning.ok and sorted((b.channel, b.action, len(b.fingerprints))
                                 for b in morning.batches) == [("email", "sent", 3),
                                                               ("teams", "sent", 3)]
    assert len(fake.emails) == 2 and len(fake.cards) == 2
    digest = fake.emails[1]["content"]
    assert digest["subject"] == "[zts] Digest: 3 findings (2 medium)"  # max_items: 2 listed
    assert "(1 more not listed)" in digest["plainText"]
    assert state.held_records() == []


def test_digest_failure_keeps_findings_held(router: AlertRouter, fake: FakeNotify,
                                            state: TableAlertState, clock: Clock) -> None:
    fake.add_fault("POST", "/emails:send", 500, times=10)
    result = router.route([make_finding(severity="low", identity=(f"i{i}",)) for i in range(2)])
    assert [b.action for b in result.batches] == ["failed"] and not result.ok
    held = state.held_records()
    assert len(held) == 2 and all(s.record.channel("email").claim == "" for s in held)
    fake.reset()
    clock.advance(minutes=10)
    retry = router.route([])
    assert [b.action for b in retry.batches] == ["sent"] and len(fake.emails) == 1


def test_resolution_notice_and_reopen(router: AlertRouter, fake: FakeNotify,
                                      state: TableAlertState, clock: Clock) -> None:
    gone, stays = make_finding(identity=("gone",)), make_finding(identity=("stays",))
    other = make_finding("drift", identity=("other detection",))
    router.route([gone, stays, other])
    fake.reset()
    clock.advance(minutes=30)
    early = router.resolve([stays.fingerprint], ["risky_region"])
    assert early.resolutions == [] and fake.emails == []  # within the 1h grace period
    clock.advance(hours=1)
    result = router.resolve([stays.fingerprint], ["risky_region"])
    assert [(r.fingerprint, [c.action for c in r.channels]) for r in result.resolutions] == [
        (gone.fingerprint, ["sent", "sent"])]
    assert fake.emails[0]["content"]["subject"] == "[zts] Resolved: 1 finding no longer seen"
    assert len(fake.cards) == 1
    assert record_of(state, "risky_region", gone.fingerprint).status == "resolved"
    assert record_of(state, "drift", other.fingerprint).status == "open"  # not checked
    assert router.resolve([], ["risky_region"]).resolutions[0].fingerprint == stays.fingerprint
    clock.advance(hours=1)
    back = router.route([gone])
    assert {c.kind for c in back.findings[0].channels} == {"reopened"}
    assert fake.emails[-1]["content"]["subject"].startswith("[zts] Reopened: HIGH")


def test_run_routes_then_resolves(router: AlertRouter, fake: FakeNotify, clock: Clock) -> None:
    first, second = make_finding(identity=("a",)), make_finding(identity=("b",))
    router.run([first, second], ["risky_region"])
    clock.advance(hours=2)
    result = router.run([first], ["risky_region"])
    assert result.counts() == {"email": {"resolved": 1, "suppressed": 1},
                               "teams": {"resolved": 1, "suppressed": 1}}
    assert result.ok


def test_unrouted_findings_are_reported_not_stored(state: TableAlertState,
                                                   email: AcsEmailChannel,
                                                   clock: Clock) -> None:
    config = config_from("""channels: {email: {to: [a@contoso.com]}}
routes: [{detections: [drift], email: true}]
""")
    result = AlertRouter(config, state, email, None, clock=clock).route([make_finding()])
    assert result.findings[0].note.startswith("no route matches") and result.ok
    assert state.get("risky_region", make_finding().fingerprint) is None
