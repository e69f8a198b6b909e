"""Ports: the interfaces services depend on. Adapters implement them; tests use real adapters
(Azurite, HTTPS fakes) rather than stand-ins of our own code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # report types only; no adapter code is imported at run time
    from shared.adapters.table_store import SaveReport, SweepReport


class InventoryStore(Protocol):
    """Raw ARM resources persisted per run, with mark-and-sweep."""

    def save(self, resources: Iterable[Mapping[str, Any]], run_id: str) -> SaveReport: ...

    def sweep(
        self, run_id: str, subscription_ids: Iterable[str], *, seen_before: datetime | None = None
    ) -> SweepReport: ...

    def load(self, subscription_ids: Iterable[str] | None = None) -> list[dict[str, Any]]: ...
