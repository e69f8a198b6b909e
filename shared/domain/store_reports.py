"""What writing the inventory store reports: plain values, so services and ports can name them
without importing the Table Storage adapter that produces them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ItemError:
    """One resource that was not written, and why. ``partition`` is None when it has no id."""

    arm_id: str
    reason: str
    partition: str | None = None


@dataclass(frozen=True, slots=True)
class BatchFailure:
    """A transaction the service rejected: nothing in it was applied (transactions are atomic)."""

    partition: str
    reason: str
    arm_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SaveReport:
    """Outcome of :meth:`TableInventoryStore.save`.

    ``batches`` counts the transactions submitted per partition (failed ones included).
    """

    written: int
    duplicates: int
    batches: Mapping[str, int]
    errors: tuple[ItemError, ...]
    failed_batches: tuple[BatchFailure, ...]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.failed_batches

    @property
    def incomplete_partitions(self) -> frozenset[str]:
        """Partitions where something was not written. Sweeping them would delete rows of
        resources that still exist, so a caller skips them (or accepts that) explicitly."""
        failed = {error.partition for error in self.errors if error.partition is not None}
        return frozenset(failed | {batch.partition for batch in self.failed_batches})


@dataclass(frozen=True, slots=True)
class SweepReport:
    """Outcome of :meth:`TableInventoryStore.sweep`.

    ``kept_changed`` counts stale rows that were rewritten between the read and the delete (their
    conditional delete got HTTP 412) and were therefore kept: they belong to a newer write.
    """

    deleted: int
    deleted_per_partition: Mapping[str, int]
    kept_changed: int
    failures: tuple[BatchFailure, ...]
