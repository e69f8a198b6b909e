"""What an alerting run did, per finding and per channel, with reasons: the service's result,
printed by the CLI and logged by the Functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["AlertRunResult", "BatchOutcome", "ChannelOutcome", "ChannelReport", "FindingOutcome"]


@dataclass(frozen=True, slots=True)
class ChannelOutcome:
    """``action``: sent | suppressed | held | in_flight | failed. ``kind``: what was (or would
    have been) sent: new | escalation | reminder | reopened | resolved."""

    channel: str
    action: str
    kind: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = {"channel": self.channel, "action": self.action}
        if self.kind:
            out["kind"] = self.kind
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(slots=True)
class FindingOutcome:
    fingerprint: str
    detection: str
    severity: str
    title: str
    channels: list[ChannelOutcome] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fingerprint": self.fingerprint, "detection": self.detection,
                               "severity": self.severity, "title": self.title,
                               "channels": [c.as_dict() for c in self.channels]}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """One digest or resolution message: to which channel and destination, covering which
    fingerprints, and whether it was accepted (``sent``), refused (``failed``) or kept for later
    (``held``)."""

    kind: str
    channel: str
    destination: str
    fingerprints: tuple[str, ...]
    action: str
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "channel": self.channel,
                               "destination": self.destination, "items": len(self.fingerprints),
                               "action": self.action, "fingerprints": list(self.fingerprints)}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(slots=True)
class ChannelReport:
    """How a channel behaved during the run: a channel that failed ``down_after`` times in a row
    is ``down`` and was not tried again in this run."""

    channel: str
    configured: bool
    delivered: int = 0
    failed: int = 0
    consecutive_failures: int = 0
    down: bool = False
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"configured": self.configured, "delivered": self.delivered,
                               "failed": self.failed, "down": self.down}
        if self.last_error:
            out["lastError"] = self.last_error
        return out


@dataclass(slots=True)
class AlertRunResult:
    findings: list[FindingOutcome] = field(default_factory=list)
    resolutions: list[FindingOutcome] = field(default_factory=list)
    batches: list[BatchOutcome] = field(default_factory=list)
    channels: dict[str, ChannelReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing failed: every delivery that was due was accepted, no state problem."""
        return not self.problems and not any(
            c.action == "failed" for f in (*self.findings, *self.resolutions) for c in f.channels
        ) and not any(b.action == "failed" for b in self.batches)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per channel: sent (of which escalated), suppressed, held, in_flight, failed, plus
        digests/resolutions sent or failed."""
        out: dict[str, dict[str, int]] = {}
        for outcome in (*self.findings, *self.resolutions):
            for c in outcome.channels:
                bucket = out.setdefault(c.channel, {})
                key = "resolved" if c.kind == "resolved" and c.action == "sent" else c.action
                bucket[key] = bucket.get(key, 0) + 1
                if c.action == "sent" and c.kind == "escalation":
                    bucket["escalated"] = bucket.get("escalated", 0) + 1
        for batch in self.batches:
            if batch.kind == "digest":
                bucket = out.setdefault(batch.channel, {})
                key = f"digest_{batch.action}"
                bucket[key] = bucket.get(key, 0) + 1
        return {channel: dict(sorted(v.items())) for channel, v in sorted(out.items())}

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "counts": self.counts(),
            "channels": {n: r.as_dict() for n, r in sorted(self.channels.items())},
            "findings": [f.as_dict() for f in self.findings],
            "resolutions": [f.as_dict() for f in self.resolutions],
            "batches": [b.as_dict() for b in self.batches],
            "problems": list(self.problems),
        }
