"""The audit trail of enforcement: one entry per NSG write attempt (and per refusal)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class AuditEntry:
    plan_id: str
    nsg_id: str
    attempt: int
    result: str  # applied | conflict | failed | unknown | refused | drift-reverted | noop
    trigger: str  # what started the run: cli, timer, event, resync
    actor: str  # who: the signed-in principal or the app's identity
    at: datetime
    before: list[dict[str, Any]] = field(default_factory=list)  # owned rules before (ARM JSON)
    after: list[dict[str, Any]] = field(default_factory=list)  # owned rules written
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "planId": self.plan_id, "nsg": self.nsg_id, "attempt": self.attempt,
            "result": self.result, "trigger": self.trigger, "actor": self.actor,
            "at": self.at.isoformat(), "before": self.before, "after": self.after,
            "message": self.message,
        }
