"""The content of an alert before rendering: one item per finding, the kind of message, and the
remediation advice per detection. Built from a live observation or from a stored record."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from shared.alerts.records import AlertRecord, Observation

__all__ = ["DEFAULT_REMEDIATION", "KIND_LABELS", "REMEDIATION", "AlertItem", "remediation_for"]

KIND_LABELS: Final = {
    "new": "New finding", "escalation": "Escalated", "reminder": "Still present",
    "reopened": "Reopened", "resolved": "Resolved", "digest": "Digest", "test": "Test alert",
}

REMEDIATION: Final = {
    "drift": "zts reverts hand edits of the rules it owns at each reconcile. Find who changed "
             "the rules (Activity Log of the NSG) and make the change through the policy file "
             "instead, or it will be reverted again.",
    "risky_region": "Confirm whether this VM should exchange traffic with that country. If not, "
                    "add a deny rule for it to the policy and review the VM for compromise.",
    "malicious": "Treat the VM as possibly compromised: move it to an isolation group (deny "
                 "all), review its processes and sign-ins, and block the remote address.",
    "cross_subscription": "Check that this flow between subscriptions is expected. Allow it "
                          "explicitly in the policy if it is, otherwise deny it.",
    "blast_radius": "The hosts listed can be reached from a risky source. Tighten the rules "
                    "between the groups on these paths and review the reached hosts first.",
    "lateral_movement": "Review the source VM and the listed destinations; restrict east-west "
                        "traffic between these groups to the ports the application needs.",
    "azure_service": "Check that this Azure service dependency is expected; prefer private "
                     "endpoints and service tags scoped to the region.",
}
DEFAULT_REMEDIATION: Final = ("Review the finding and its evidence, and adjust the segmentation "
                              "policy if the traffic is not expected.")


def remediation_for(detection: str, overrides: dict[str, str]) -> str:
    return overrides.get(detection) or REMEDIATION.get(detection) or DEFAULT_REMEDIATION


@dataclass(frozen=True, slots=True)
class AlertItem:
    """One finding as a message shows it. Every string here may be user-controlled: renderers
    escape them all."""

    kind: str
    reason: str
    fingerprint: str
    detection: str
    severity: str
    title: str
    resource_id: str
    observed_at: str
    evidence: dict[str, Any] = field(default_factory=dict)
    seen_count: int = 1
    first_seen: datetime | None = None

    @classmethod
    def from_observation(cls, observation: Observation, kind: str, reason: str,
                         record: AlertRecord | None = None) -> AlertItem:
        finding = observation.finding
        return cls(kind, reason, observation.fingerprint, finding.detection, finding.severity,
                   finding.title, finding.resource_id, finding.observed_at.isoformat(),
                   dict(finding.evidence), record.seen_count if record else 1,
                   record.first_seen if record else None)

    @classmethod
    def from_record(cls, record: AlertRecord, kind: str, reason: str = "") -> AlertItem:
        finding = record.finding
        evidence = finding.get("evidence")
        return cls(kind, reason, record.fingerprint, record.detection, record.severity,
                   record.title, record.resource_id, str(finding.get("observedAt", "")),
                   dict(evidence) if isinstance(evidence, dict) else {}, record.seen_count,
                   record.first_seen)
