"""What a discovery run asks for and what it got: pure types shared by the discovery service and
the sources (Resource Graph, per-subscription ARM listing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class DiscoveryScope:
    """Explicit subscriptions, or one management group, or (neither) every subscription the
    identity can read."""

    subscriptions: tuple[str, ...] = ()
    management_group: str | None = None

    def describe(self) -> str:
        if self.subscriptions:
            return f"{len(self.subscriptions)} listed subscription(s)"
        if self.management_group:
            return f"management group {self.management_group}"
        return "every subscription the identity can read"


@dataclass
class SourceRead:
    """Rows read for some subscriptions, and the subscriptions that could not be read completely
    (id -> reason). A subscription is either complete or listed in ``failed``."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class DiscoveryResult:
    """Raw ARM resources (the snapshot format) plus the completeness accounting mark-and-sweep
    needs: only ``complete`` subscriptions may be swept."""

    rows: list[dict[str, Any]]
    subscriptions: dict[str, str]  # subscription id (lower-case) -> display name ("" if none)
    complete: list[str]
    failed: dict[str, str]  # subscription id -> why it is incomplete
    sources: dict[str, list[str]]  # source name -> subscriptions it supplied
    requests: dict[str, int]  # source name -> API requests made
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every subscription in scope was read completely, and there was at least one: an
        identity that sees nothing is a permissions problem, not an empty estate."""
        return not self.failed and bool(self.subscriptions)

    def summary(self) -> dict[str, Any]:
        return {
            "rows": len(self.rows),
            "subscriptions": len(self.subscriptions),
            "complete": len(self.complete),
            "failed": dict(sorted(self.failed.items())),
            "sources": {name: len(subs) for name, subs in sorted(self.sources.items())},
            "requests": dict(sorted(self.requests.items())),
            "notes": list(self.notes),
        }
