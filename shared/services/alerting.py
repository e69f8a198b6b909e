"""Route a run's findings to email and Teams: once per suppression window, again on escalation,
low severities in one digest, resolutions when findings stop, never twice from concurrent runs.

For each finding (highest severity first):

1. **Claim**: read its record, let :func:`shared.alerts.dedup.plan_observation` count the
   sighting and decide each channel, and write the record back conditionally (insert when new,
   ``If-Match`` otherwise). Channels that should send are *claimed* in that same write with this
   delivery's token. A lost race (the row changed since it was read) means: read again and decide
   again, so a second run sees the first run's claim and stays quiet.
2. **Send** through each claimed channel.
3. **Settle**: write the outcome, again conditionally: accepted channels get ``sent_at`` (the
   suppression window starts), refused ones have their claim released and stay retryable. Nothing
   is marked sent before the channel accepted it. A run that dies between 1 and 3 leaves a claim
   that expires after ``claim_ttl``, after which the next run retries.

Channels fail independently: a channel that fails ``down_after`` deliveries in a row is not tried
again during the run (the findings it would have carried are reported as failed and stay
retryable), and is reported in the result; the other channel carries on.

Digest and resolution notices are batches: claim every record they cover (same conditional
writes), send one message per channel and destination, then settle every record.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.alerts.config import AlertConfig, severity_rank
from shared.alerts.dedup import (
    Action,
    Decision,
    Plan,
    claim_batch,
    plan_observation,
    resolution_due,
    settle_failed,
    settle_resolution,
    settle_sent,
)
from shared.alerts.message import AlertItem, remediation_for
from shared.alerts.outcome import (
    AlertRunResult,
    BatchOutcome,
    ChannelOutcome,
    ChannelReport,
    FindingOutcome,
)
from shared.alerts.ports import (
    AlertStateStore,
    DeliveryFailed,
    EmailChannel,
    StateStoreError,
    TeamsChannel,
)
from shared.alerts.records import AlertRecord, Observation
from shared.alerts.render_card import alert_card, batch_card
from shared.alerts.render_email import EmailContent, alert_email, batch_email
from shared.alerts.routing import digest_bound, in_quiet_hours, targets_for
from shared.domain.findings import Finding
from shared.errors import ConcurrencyConflict

__all__ = ["DEFAULT_CLAIM_TTL", "AlertRouter"]

DEFAULT_CLAIM_TTL: Final = timedelta(minutes=15)
"""Longer than a delivery can take with every retry (see the adapters' retry budgets)."""
_OPERATION_NAMESPACE: Final = uuid.UUID("6f1d3c52-7a0e-4f57-9a43-2b1f0e6c9d11")
_ACTIONS: Final = {Action.SUPPRESSED: "suppressed", Action.HELD: "held",
                   Action.IN_FLIGHT: "in_flight", Action.UNAVAILABLE: "failed"}


def _now() -> datetime:
    return datetime.now(UTC)


def _token() -> str:
    return secrets.token_hex(8)


class _Contended(Exception):
    """The record kept changing between read and write: give up on it for this run."""


@dataclass
class _Run:
    """Channel health during one run."""

    reports: dict[str, ChannelReport]
    down_after: int

    def available(self) -> frozenset[str]:
        return frozenset(n for n, r in self.reports.items() if r.configured and not r.down)

    def delivered(self, channel: str) -> None:
        report = self.reports[channel]
        report.delivered += 1
        report.consecutive_failures = 0

    def failed(self, channel: str, reason: str) -> None:
        report = self.reports[channel]
        report.failed += 1
        report.consecutive_failures += 1
        report.last_error = reason
        if report.consecutive_failures >= self.down_after:
            report.down = True

    def why_unavailable(self, channel: str) -> str:
        report = self.reports[channel]
        if not report.configured:
            return f"the {channel} channel is not configured (see docs/alerts.md, settings)"
        return (f"the {channel} channel failed {report.consecutive_failures} time(s) in a row "
                f"this run and is not tried again until the next run: {report.last_error}")


@dataclass
class AlertRouter:
    """The alerting use-case. ``email``/``teams`` are None when not configured; findings routed
    to a missing channel are reported as failed (and stay retryable)."""

    config: AlertConfig
    state: AlertStateStore
    email: EmailChannel | None = None
    teams: TeamsChannel | None = None
    clock: Callable[[], datetime] = _now
    claim_ttl: timedelta = DEFAULT_CLAIM_TTL
    down_after: int = 2
    max_conflicts: int = 8
    new_token: Callable[[], str] = _token

    # -- public API --------------------------------------------------------------------------

    def route(self, findings: Iterable[Finding | Observation]) -> AlertRunResult:
        """Alert on this run's findings (new, escalated, reminders; low ones held for the
        digest), then send the digest unless it is quiet hours."""
        result, run = self._start()
        now = self.clock()
        for observation in _unique(findings):
            result.findings.append(self._route_one(observation, now, run, result))
        self._flush_digest(now, run, result)
        return result

    def resolve(self, fingerprints_seen: Iterable[str],
                detections_checked: Iterable[str]) -> AlertRunResult:
        """Findings of ``detections_checked`` that this run did not see (and that have been
        unseen for ``resolution.after``) are resolved; channels that had alerted get one
        resolution notice per destination."""
        result, run = self._start()
        now = self.clock()
        seen = frozenset(fingerprints_seen)
        checked = sorted(set(detections_checked))
        try:
            stored = self.state.open_records(checked) if checked else []
        except StateStoreError as error:
            result.problems.append(f"state store: {error}")
            return result
        due = [s.record for s in sorted(stored, key=lambda s: s.record.fingerprint)
               if resolution_due(s.record, seen, now, self.config.resolve_after)]
        self._resolve(due, seen, now, run, result)
        return result

    def run(self, findings: Sequence[Finding | Observation],
            detections_checked: Iterable[str] | None = None) -> AlertRunResult:
        """``route`` then, when the detections that ran are given, ``resolve`` with the
        fingerprints routed: the usual call of a scheduled detection run."""
        routed = self.route(findings)
        if detections_checked is None:
            return routed
        resolved = self.resolve([_observation(f).fingerprint for f in findings],
                                detections_checked)
        routed.resolutions = resolved.resolutions
        routed.batches.extend(resolved.batches)
        routed.problems.extend(resolved.problems)
        for name, report in resolved.channels.items():
            mine = routed.channels[name]
            mine.delivered += report.delivered
            mine.failed += report.failed
            mine.down = mine.down or report.down
            mine.last_error = report.last_error or mine.last_error
        return routed

    # -- one finding -------------------------------------------------------------------------

    def _start(self) -> tuple[AlertRunResult, _Run]:
        reports = {
            "email": ChannelReport("email", self.email is not None),
            "teams": ChannelReport("teams", self.teams is not None),
        }
        return AlertRunResult(channels=reports), _Run(reports, self.down_after)

    def _route_one(self, observation: Observation, now: datetime, run: _Run,
                   result: AlertRunResult) -> FindingOutcome:
        finding = observation.finding
        outcome = FindingOutcome(observation.fingerprint, finding.detection, finding.severity,
                                 finding.title)
        targets = targets_for(finding.detection, finding.severity, self.config)
        if not targets.channels:
            outcome.note = "no route matches this detection and severity: not alerted"
            return outcome
        token = self.new_token()
        digest = self._digest_reason(finding.severity, now)
        plans: list[Plan] = []

        def claim(prior: AlertRecord | None) -> AlertRecord:
            plan = plan_observation(prior, observation, targets, now=now,
                                    window=self.config.window(finding.detection),
                                    available=run.available(), token=token,
                                    claim_ttl=self.claim_ttl, digest=digest)
            plans.append(plan)
            return plan.record

        try:
            record = self._write(finding.detection, observation.fingerprint, claim)
        except (_Contended, StateStoreError) as error:
            reason = _state_reason(error)
            result.problems.append(f"{observation.fingerprint}: {reason}")
            outcome.channels = [ChannelOutcome(c, "failed", reason=reason)
                                for c in targets.channels]
            return outcome
        assert record is not None
        decisions = plans[-1].decisions
        delivered: dict[str, str | None] = {}  # channel -> None (accepted) or the error
        for channel, decision in decisions.items():
            if decision.sends:
                item = AlertItem.from_observation(observation, decision.action.value,
                                                  decision.reason, record)
                delivered[channel] = self._send_alert(channel, item, targets.email, token,
                                                      run)
        outcome.channels = [self._channel_outcome(d, delivered, run)
                            for d in decisions.values()]
        if delivered:
            self._settle(observation, token, delivered, now, result)
        return outcome

    def _channel_outcome(self, decision: Decision, delivered: dict[str, str | None],
                         run: _Run) -> ChannelOutcome:
        if decision.sends:
            error = delivered.get(decision.channel)
            if error is None:
                return ChannelOutcome(decision.channel, "sent", decision.action.value,
                                      decision.reason)
            return ChannelOutcome(decision.channel, "failed", decision.action.value, error)
        if decision.action is Action.UNAVAILABLE:
            return ChannelOutcome(decision.channel, "failed", "",
                                  f"{decision.reason}: {run.why_unavailable(decision.channel)}")
        return ChannelOutcome(decision.channel, _ACTIONS[decision.action], "", decision.reason)

    def _settle(self, observation: Observation, token: str, delivered: dict[str, str | None],
                now: datetime, result: AlertRunResult) -> None:
        finding = observation.finding

        def settle(prior: AlertRecord | None) -> AlertRecord | None:
            if prior is None:
                return None  # deleted meanwhile: nothing to settle
            record = prior
            for channel, error in sorted(delivered.items()):
                if error is None:
                    record = settle_sent(record, channel, token, now, severity=finding.severity,
                                         reach=observation.reach)
                else:
                    record = settle_failed(record, channel, token, error)
            return record

        try:
            self._write(finding.detection, observation.fingerprint, settle)
        except (_Contended, StateStoreError) as error:
            result.problems.append(
                f"{observation.fingerprint}: delivered ({', '.join(sorted(delivered))}) but the "
                f"outcome could not be recorded ({_state_reason(error)}); the claim expires "
                f"after {self.claim_ttl} and the alert may then be sent again")

    def _digest_reason(self, severity: str, now: datetime) -> str:
        if not digest_bound(severity, now, self.config):
            return ""
        if severity in self.config.digest_severities:
            return f"{severity} findings are sent in the digest"
        return "quiet hours"

    # -- delivery ----------------------------------------------------------------------------

    def _send_alert(self, channel: str, item: AlertItem, recipients: tuple[str, ...],
                    token: str, run: _Run) -> str | None:
        remediation = remediation_for(item.detection, self.config.remediation)
        if channel == "email":
            return self._deliver(run, channel, lambda: self._email_send(
                recipients, alert_email(item, remediation), f"{item.fingerprint}:{token}"))
        return self._deliver(run, channel, lambda: self._teams_post(alert_card(item,
                                                                               remediation)))

    def _email_send(self, recipients: tuple[str, ...], content: EmailContent, key: str) -> None:
        assert self.email is not None
        self.email.send(recipients, content,
                        operation_id=str(uuid.uuid5(_OPERATION_NAMESPACE, key)))

    def _teams_post(self, card: dict[str, object]) -> None:
        assert self.teams is not None
        self.teams.post(card)

    def _deliver(self, run: _Run, channel: str, send: Callable[[], None]) -> str | None:
        """Send once (the adapter retries transient errors); None when accepted, else the
        reason. A channel already down this run is not tried."""
        if channel not in run.available():
            return run.why_unavailable(channel)
        try:
            send()
        except DeliveryFailed as error:
            run.failed(channel, error.reason)
            return error.reason
        except Exception as error:  # a channel bug must not stop the other channel
            reason = f"unexpected {type(error).__name__} from the {channel} adapter"
            run.failed(channel, reason)
            return reason
        run.delivered(channel)
        return None

    # -- digest ------------------------------------------------------------------------------

    def _flush_digest(self, now: datetime, run: _Run, result: AlertRunResult) -> None:
        try:
            stored = self.state.held_records()
        except StateStoreError as error:
            result.problems.append(f"state store (digest): {error}")
            return
        held = sorted((s.record for s in stored), key=lambda r: r.fingerprint)
        if not held:
            return
        if in_quiet_hours(now, self.config.quiet_hours):
            for channel in ("email", "teams"):
                waiting = tuple(r.fingerprint for r in held if r.channel(channel).held)
                if waiting:
                    result.batches.append(BatchOutcome("digest", channel, "", waiting, "held",
                                                       "quiet hours: sent when they end"))
            return
        self._batch("digest", held, now, run, result)

    # -- resolution --------------------------------------------------------------------------

    def _resolve(self, due: list[AlertRecord], seen: frozenset[str], now: datetime, run: _Run,
                 result: AlertRunResult) -> None:
        configured = frozenset(n for n, r in run.reports.items() if r.configured)
        to_notify = []
        for record in due:
            tell = tuple(sorted(n for n, s in record.channels.items()
                                if s.sent_at is not None and s.resolution_sent_at is None
                                and n in configured)) if self.config.notify_resolution else ()
            if tell:
                to_notify.append(record)
                continue

            def close(prior: AlertRecord | None) -> AlertRecord | None:
                if prior is None or not resolution_due(prior, seen, now,
                                                       self.config.resolve_after):
                    return None
                return settle_resolution(prior, {}, "", now, frozenset())

            try:
                closed = self._write(record.detection, record.fingerprint, close)
            except (_Contended, StateStoreError) as error:
                result.problems.append(f"{record.fingerprint}: {_state_reason(error)}")
                continue
            if closed is not None:
                result.resolutions.append(FindingOutcome(
                    record.fingerprint, record.detection, record.severity, record.title,
                    note="resolved without a notice (never alerted, or notices are off)"))
        self._batch("resolution", to_notify, now, run, result, seen=seen)

    # -- batches (digest, resolution) --------------------------------------------------------

    def _batch(self, kind: str, records: list[AlertRecord], now: datetime, run: _Run,
               result: AlertRunResult, seen: frozenset[str] = frozenset()) -> None:
        """Claim every record, send one message per (channel, destination), settle."""
        token = self.new_token()
        groups: dict[tuple[str, tuple[str, ...]], list[AlertRecord]] = {}
        for record in records:
            wanted = tuple(c for c in ("email", "teams") if c in run.available())

            def claim(prior: AlertRecord | None, wanted: tuple[str, ...] = wanted
                      ) -> AlertRecord | None:
                if prior is None:
                    return None
                if kind == "resolution" and not resolution_due(prior, seen, now,
                                                               self.config.resolve_after):
                    return None
                claimed_record, claimed = claim_batch(prior, wanted, token, now, self.claim_ttl,
                                                      kind)
                return claimed_record if claimed else None

            try:
                written = self._write(record.detection, record.fingerprint, claim)
            except (_Contended, StateStoreError) as problem:
                result.problems.append(f"{record.fingerprint}: {_state_reason(problem)}")
                continue
            if written is None:
                continue
            for channel, state in sorted(written.channels.items()):
                if state.claim == token:
                    destination = state.recipients if channel == "email" else ()
                    groups.setdefault((channel, destination), []).append(written)
        unavailable = {c for r in records for c, s in r.channels.items()
                       if c not in run.available() and (s.held if kind == "digest" else
                                                        s.sent_at and not s.resolution_sent_at)}
        for channel in sorted(unavailable):
            waiting = tuple(r.fingerprint for r in records if channel in r.channels)
            result.batches.append(BatchOutcome(kind, channel, "", waiting, "failed",
                                               run.why_unavailable(channel)))
        outcomes: dict[str, FindingOutcome] = {}
        for (channel, destination), members in sorted(groups.items()):
            members.sort(key=lambda r: (-severity_rank(r.severity), r.detection, r.fingerprint))
            failure = self._send_batch(kind, channel, destination, members, now, run)
            fingerprints = tuple(r.fingerprint for r in members)
            result.batches.append(BatchOutcome(
                kind, channel, ", ".join(destination) if destination else channel, fingerprints,
                "sent" if failure is None else "failed", failure or ""))
            self._settle_batch(kind, channel, token, members, failure, now, run, result)
            if kind == "resolution":
                for record in members:
                    outcome = outcomes.setdefault(record.fingerprint, FindingOutcome(
                        record.fingerprint, record.detection, record.severity, record.title))
                    outcome.channels.append(ChannelOutcome(
                        channel, "sent" if failure is None else "failed", "resolved",
                        failure or "no longer seen"))
        result.resolutions.extend(outcomes[k] for k in sorted(outcomes))

    def _send_batch(self, kind: str, channel: str, destination: tuple[str, ...],
                    members: list[AlertRecord], now: datetime, run: _Run) -> str | None:
        items = [AlertItem.from_record(r, kind) for r in members]
        listed = items[: self.config.digest_max_items]
        if channel == "email":
            if not destination:
                return "no recipients were recorded for these findings"
            key = f"{kind}:{','.join(r.fingerprint for r in members)}:{now.isoformat()}"
            return self._deliver(run, channel, lambda: self._email_send(
                destination, batch_email(kind, listed, len(items), now), key))
        return self._deliver(run, channel, lambda: self._teams_post(
            batch_card(kind, listed, len(items), now)))

    def _settle_batch(self, kind: str, channel: str, token: str, members: list[AlertRecord],
                      error: str | None, now: datetime, run: _Run,
                      result: AlertRunResult) -> None:
        configured = frozenset(n for n, r in run.reports.items() if r.configured)
        for member in members:
            def settle(prior: AlertRecord | None, member: AlertRecord = member
                       ) -> AlertRecord | None:
                if prior is None:
                    return None
                if kind == "resolution":
                    return settle_resolution(prior, {channel: error is None}, token, now,
                                             configured)
                if error is None:
                    return settle_sent(prior, channel, token, now, severity=member.severity,
                                       reach=member.reach)
                return settle_failed(prior, channel, token, error)

            try:
                self._write(member.detection, member.fingerprint, settle)
            except (_Contended, StateStoreError) as problem:
                result.problems.append(f"{member.fingerprint}: {kind} outcome not recorded "
                                       f"({_state_reason(problem)})")

    # -- conditional writes ------------------------------------------------------------------

    def _write(self, detection: str, fingerprint: str,
               change: Callable[[AlertRecord | None], AlertRecord | None]) -> AlertRecord | None:
        """Read, change, write conditionally; on a lost race read and change again. Returns the
        record written, or None when ``change`` wanted no write."""
        for _ in range(self.max_conflicts):
            stored = self.state.get(detection, fingerprint)
            record = change(stored.record if stored is not None else None)
            if record is None:
                return None
            try:
                if stored is None:
                    self.state.insert(record)
                else:
                    self.state.replace(record, stored.etag)
            except ConcurrencyConflict:
                continue
            return record
        raise _Contended(f"the state row changed {self.max_conflicts} times while it was being "
                         "updated")


def _observation(finding: Finding | Observation) -> Observation:
    return finding if isinstance(finding, Observation) else Observation.of(finding)


def _unique(findings: Iterable[Finding | Observation]) -> list[Observation]:
    """One observation per fingerprint (the most severe, then the widest reach), highest
    severity first so they go out before a failing channel is given up for the run."""
    best: dict[str, Observation] = {}
    for item in findings:
        observation = _observation(item)
        current = best.get(observation.fingerprint)
        if current is None or (severity_rank(observation.finding.severity), observation.reach) > (
                severity_rank(current.finding.severity), current.reach):
            best[observation.fingerprint] = observation
    return sorted(best.values(), key=lambda o: (-severity_rank(o.finding.severity),
                                                o.finding.detection, o.fingerprint))


def _state_reason(error: Exception) -> str:
    if isinstance(error, StateStoreError):
        return f"state store unavailable: {error}"
    return str(error)
