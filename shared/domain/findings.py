"""Findings: what zts reports to people (drift now; traffic detections later), with a stable
fingerprint so alerting can deduplicate the same incident across runs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SEVERITIES = ("informational", "low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Finding:
    detection: str  # catalog id, e.g. "drift", "risky_region"
    severity: str  # one of SEVERITIES
    title: str
    resource_id: str  # what it is about (NSG, VM, NIC...)
    observed_at: datetime
    evidence: dict[str, Any] = field(default_factory=dict)
    identity: tuple[str, ...] = ()  # what makes two observations the same incident

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")

    @property
    def fingerprint(self) -> str:
        """Same detection, resource and identity -> same fingerprint, whatever the time."""
        material = json.dumps([self.detection, self.resource_id.lower(), *self.identity])
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    def as_dict(self) -> dict[str, Any]:
        return {
            "detection": self.detection, "severity": self.severity, "title": self.title,
            "resource": self.resource_id, "observedAt": self.observed_at.isoformat(),
            "fingerprint": self.fingerprint, "evidence": self.evidence,
        }
