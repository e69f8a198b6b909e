"""What the state store keeps per fingerprint, and the observation being routed.

One record per fingerprint, with one :class:`ChannelState` per channel, because channels succeed
and fail independently: when email was accepted and Teams was down, the next run must retry Teams
only. Records are immutable; every change builds a new one (see :mod:`shared.alerts.dedup`), and
the store writes it back conditionally on the ETag it was read with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from shared.domain.findings import Finding

__all__ = ["FINDING_JSON_LIMIT", "AlertRecord", "ChannelState", "Observation", "reach"]

FINDING_JSON_LIMIT: Final = 30_000
"""Characters of the finding kept in the record (a Table string property holds 32K characters);
larger evidence is replaced by a truncated summary."""


def reach(finding: Finding) -> int:
    """How many hosts the finding reaches (``evidence["reached"]``: a list, or a count); growth
    is an escalation."""
    value = finding.evidence.get("reached")
    if isinstance(value, list | tuple | set | frozenset | dict):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0


@dataclass(frozen=True, slots=True)
class Observation:
    """A finding as routed this run, with its fingerprint (taken from the finding, or from a
    findings file that printed it without the identity it was computed from)."""

    finding: Finding
    fingerprint: str

    @classmethod
    def of(cls, finding: Finding) -> Observation:
        return cls(finding, finding.fingerprint)

    @property
    def reach(self) -> int:
        return reach(self.finding)

    def finding_dict(self) -> dict[str, Any]:
        """The finding as stored and rendered later (digest, resolution): ``as_dict`` with this
        observation's fingerprint, evidence summarised when it is too large to keep."""
        data = self.finding.as_dict()
        data["fingerprint"] = self.fingerprint
        text = json.dumps(data, sort_keys=True, default=str)
        if len(text) > FINDING_JSON_LIMIT:
            evidence = json.dumps(self.finding.evidence, sort_keys=True, default=str)
            data["evidence"] = {"summary": evidence[: FINDING_JSON_LIMIT // 2] + "…",
                                "truncated": True}
            data["title"] = str(data["title"])[:2000]
        return data


@dataclass(frozen=True, slots=True)
class ChannelState:
    """Delivery state of one fingerprint on one channel.

    ``sent_*`` describe the last alert the channel accepted: the suppression window starts at
    ``sent_at``, escalation compares with ``sent_severity``/``sent_reach``. ``claim`` is the token
    of the run that is sending right now (until ``claim_until``, after which a crashed run's
    claim no longer blocks). ``held``: waiting for the digest, to ``recipients``.
    """

    sent_at: datetime | None = None
    sent_severity: str = ""
    sent_reach: int = 0
    sent_count: int = 0
    held: bool = False
    held_since: datetime | None = None
    recipients: tuple[str, ...] = ()
    claim: str = ""
    claim_until: datetime | None = None
    claim_kind: str = ""  # alert | digest | resolution
    failures: int = 0
    last_error: str = ""
    resolution_sent_at: datetime | None = None

    def claimed(self, now: datetime) -> bool:
        return bool(self.claim) and self.claim_until is not None and self.claim_until > now

    def as_json(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "sentAt": when(self.sent_at), "sentSeverity": self.sent_severity,
            "sentReach": self.sent_reach, "sentCount": self.sent_count, "held": self.held,
            "heldSince": when(self.held_since), "recipients": list(self.recipients),
            "claim": self.claim, "claimUntil": when(self.claim_until),
            "claimKind": self.claim_kind, "failures": self.failures,
            "lastError": self.last_error, "resolutionSentAt": when(self.resolution_sent_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelState:
        def when(value: Any) -> datetime | None:
            return datetime.fromisoformat(value) if isinstance(value, str) and value else None

        return cls(
            sent_at=when(data.get("sentAt")), sent_severity=str(data.get("sentSeverity") or ""),
            sent_reach=int(data.get("sentReach") or 0), sent_count=int(data.get("sentCount") or 0),
            held=bool(data.get("held")), held_since=when(data.get("heldSince")),
            recipients=tuple(str(r) for r in data.get("recipients") or ()),
            claim=str(data.get("claim") or ""), claim_until=when(data.get("claimUntil")),
            claim_kind=str(data.get("claimKind") or ""), failures=int(data.get("failures") or 0),
            last_error=str(data.get("lastError") or ""),
            resolution_sent_at=when(data.get("resolutionSentAt")),
        )


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """Everything known about one fingerprint: the latest observation (what a digest or a
    resolution notice shows), counters, and the per-channel delivery state."""

    fingerprint: str
    detection: str
    resource_id: str
    title: str
    severity: str
    reach: int
    first_seen: datetime
    last_seen: datetime
    seen_count: int
    status: str = "open"  # open | resolved
    resolved_at: datetime | None = None
    finding: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, ChannelState] = field(default_factory=dict)

    def channel(self, name: str) -> ChannelState:
        return self.channels.get(name, ChannelState())

    def with_channel(self, name: str, state: ChannelState) -> AlertRecord:
        return replace(self, channels={**self.channels, name: state})

    @property
    def held(self) -> bool:
        return any(state.held for state in self.channels.values())

    @property
    def alerted(self) -> bool:
        """Some channel accepted an alert for it (so a resolution notice makes sense)."""
        return any(state.sent_at is not None for state in self.channels.values())
