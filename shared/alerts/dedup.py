"""Deduplication and suppression: given what the store holds, a new observation and the time,
decide per channel whether to send, hold for the digest, or stay quiet, and build the record to
write back.

The rules (``docs/alerts.md`` explains them with examples):

* a fingerprint alerts once per suppression window (per channel): repeats within the window only
  bump ``seen_count`` and ``last_seen``;
* an **escalation** alerts again at once: a higher severity than the last alert, or more hosts
  reached (``evidence["reached"]`` grew);
* after the window a still-present finding alerts again (a **reminder**), and a finding seen again
  after it was resolved alerts as **reopened**;
* a channel that another run has claimed (and whose claim has not expired) is left to that run:
  two runs never both send;
* a failed delivery leaves ``sent_at`` untouched, so the next run tries again.

Nothing here performs I/O; :mod:`shared.services.alerting` reads, calls these, and writes with the
ETag it read, re-reading and re-deciding when another run wrote first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from shared.alerts.config import severity_rank
from shared.alerts.duration import format_duration
from shared.alerts.records import AlertRecord, ChannelState, Observation
from shared.alerts.routing import Targets

__all__ = [
    "SENDING",
    "Action",
    "Decision",
    "Plan",
    "claim_batch",
    "decide",
    "observe",
    "plan_observation",
    "resolution_due",
    "settle_failed",
    "settle_resolution",
    "settle_sent",
]

ERROR_LIMIT = 500


class Action(StrEnum):
    NEW = "new"
    ESCALATION = "escalation"
    REMINDER = "reminder"
    REOPENED = "reopened"
    SUPPRESSED = "suppressed"
    HELD = "held"
    IN_FLIGHT = "in_flight"
    UNAVAILABLE = "unavailable"


SENDING = frozenset({Action.NEW, Action.ESCALATION, Action.REMINDER, Action.REOPENED})


@dataclass(frozen=True, slots=True)
class Decision:
    channel: str
    action: Action
    reason: str

    @property
    def sends(self) -> bool:
        return self.action in SENDING


@dataclass(frozen=True, slots=True)
class Plan:
    """The record to write (observation counted, claims and holds set) and each channel's
    decision. Only channels whose decision ``sends`` were claimed with the plan's token."""

    record: AlertRecord
    decisions: dict[str, Decision]


def observe(prior: AlertRecord | None, observation: Observation, now: datetime) -> AlertRecord:
    """Count one more sighting. A resolved record reopens with its delivery history cleared, so
    the next alert says "reopened" rather than being suppressed by an old window."""
    finding = observation.finding
    if prior is None:
        return AlertRecord(observation.fingerprint, finding.detection, finding.resource_id,
                           finding.title, finding.severity, observation.reach, now, now, 1,
                           finding=observation.finding_dict())
    channels = prior.channels
    if prior.status == "resolved":
        channels = {name: replace(state, sent_at=None, sent_severity="", sent_reach=0,
                                  resolution_sent_at=None)
                    for name, state in prior.channels.items()}
    return replace(prior, title=finding.title, severity=finding.severity,
                   resource_id=finding.resource_id, reach=observation.reach, last_seen=now,
                   seen_count=prior.seen_count + 1, status="open", resolved_at=None,
                   finding=observation.finding_dict(), channels=channels)


def decide(state: ChannelState, *, channel: str, severity: str, reach: int, now: datetime,
           window: timedelta, reopened: bool = False, digest: str = "") -> Decision:
    """What to do on one channel. ``digest`` is why the finding waits for the digest this run
    (empty: it does not)."""
    if state.claimed(now):
        assert state.claim_until is not None
        return Decision(channel, Action.IN_FLIGHT, "another run is delivering it (claimed until "
                        f"{state.claim_until.isoformat(timespec='seconds')})")
    if state.sent_at is None:
        action = Action.REOPENED if reopened else Action.NEW
        reason = "seen again after it was resolved" if reopened else "first alert"
        if state.failures:
            reason += f" (retry after {state.failures} failed attempt(s): {state.last_error})"
    elif severity_rank(severity) > severity_rank(state.sent_severity):
        action, reason = Action.ESCALATION, (f"severity rose from {state.sent_severity} to "
                                             f"{severity}")
    elif reach > state.sent_reach:
        action, reason = Action.ESCALATION, (f"now reaches {reach} hosts (the last alert said "
                                             f"{state.sent_reach})")
    elif now - state.sent_at >= window:
        action, reason = Action.REMINDER, (f"still present {format_duration(now - state.sent_at)}"
                                           f" after the last alert (window "
                                           f"{format_duration(window)})")
    else:
        left = state.sent_at + window - now
        return Decision(channel, Action.SUPPRESSED, f"alerted "
                        f"{format_duration(now - state.sent_at)} ago; suppressed for "
                        f"{format_duration(left)} more")
    if digest:
        if state.held:
            return Decision(channel, Action.SUPPRESSED, "already waiting for the digest")
        return Decision(channel, Action.HELD, f"waits for the digest ({digest})")
    return Decision(channel, action, reason)


def plan_observation(prior: AlertRecord | None, observation: Observation, targets: Targets, *,
                     now: datetime, window: timedelta, available: frozenset[str], token: str,
                     claim_ttl: timedelta, digest: str = "") -> Plan:
    """Count the observation and decide every targeted channel; claim those that send (when the
    channel is available this run) and mark those that wait for the digest."""
    record = observe(prior, observation, now)
    reopened = prior is not None and prior.status == "resolved"
    decisions: dict[str, Decision] = {}
    for channel in targets.channels:
        state = record.channel(channel)
        decision = decide(state, channel=channel, severity=observation.finding.severity,
                          reach=observation.reach, now=now, window=window, reopened=reopened,
                          digest=digest)
        recipients = targets.email if channel == "email" else ()
        if decision.sends and channel not in available:
            decision = Decision(channel, Action.UNAVAILABLE,
                                f"{decision.action.value} alert not sent: channel unavailable")
        elif decision.sends:
            state = replace(state, claim=token, claim_until=now + claim_ttl, claim_kind="alert",
                            recipients=recipients)
        elif decision.action is Action.HELD:
            state = replace(state, held=True, held_since=state.held_since or now,
                            recipients=recipients)
        record = record.with_channel(channel, state)
        decisions[channel] = decision
    return Plan(record, decisions)


def settle_sent(record: AlertRecord, channel: str, token: str, now: datetime, *,
                severity: str, reach: int) -> AlertRecord:
    """The channel accepted the alert (or the digest holding it): the window starts now."""
    state = record.channel(channel)
    ours = state.claim == token
    return record.with_channel(channel, replace(
        state, sent_at=now, sent_severity=severity, sent_reach=reach,
        sent_count=state.sent_count + 1, held=False, held_since=None, failures=0, last_error="",
        claim="" if ours else state.claim, claim_until=None if ours else state.claim_until,
        claim_kind="" if ours else state.claim_kind))


def settle_failed(record: AlertRecord, channel: str, token: str, error: str) -> AlertRecord:
    """The channel refused or could not be reached: release the claim, keep it retryable."""
    state = record.channel(channel)
    if state.claim != token:
        return record.with_channel(channel, replace(state, failures=state.failures + 1,
                                                    last_error=error[:ERROR_LIMIT]))
    return record.with_channel(channel, replace(
        state, claim="", claim_until=None, claim_kind="", failures=state.failures + 1,
        last_error=error[:ERROR_LIMIT]))


def claim_batch(record: AlertRecord, channels: tuple[str, ...], token: str, now: datetime,
                claim_ttl: timedelta, kind: str) -> tuple[AlertRecord, tuple[str, ...]]:
    """Claim the channels of ``record`` that a digest or resolution notice would deliver, skipping
    those another run holds. Returns the record to write and the channels claimed."""
    claimed = []
    for channel in channels:
        state = record.channel(channel)
        if state.claimed(now):
            continue
        if kind == "digest" and not state.held:
            continue
        if kind == "resolution" and (state.sent_at is None or state.resolution_sent_at):
            continue
        record = record.with_channel(channel, replace(
            state, claim=token, claim_until=now + claim_ttl, claim_kind=kind))
        claimed.append(channel)
    return record, tuple(claimed)


def resolution_due(record: AlertRecord, seen: frozenset[str], now: datetime,
                   after: timedelta) -> bool:
    """Open, not seen by this run, and unseen for at least ``after`` (a grace period, so a
    finding that flickers between runs does not resolve and reopen every time)."""
    return (record.status == "open" and record.fingerprint not in seen
            and now - record.last_seen >= after)


def settle_resolution(record: AlertRecord, delivered: dict[str, bool], token: str,
                      now: datetime, configured: frozenset[str]) -> AlertRecord:
    """Record which channels took the resolution notice; the record closes when every channel
    that had alerted (and is still configured) has been told, or when nobody needed telling."""
    for channel, ok in delivered.items():
        state = record.channel(channel)
        ours = state.claim == token
        state = replace(state, claim="" if ours else state.claim,
                        claim_until=None if ours else state.claim_until,
                        claim_kind="" if ours else state.claim_kind)
        if ok:
            state = replace(state, resolution_sent_at=now, failures=0, last_error="")
        record = record.with_channel(channel, state)
    waiting = [name for name, state in record.channels.items()
               if name in configured and state.sent_at is not None
               and state.resolution_sent_at is None]
    if waiting:
        return record
    return replace(record, status="resolved", resolved_at=now)
