"""Ports of the alerting service: the dedup state store and the two channels.

Adapters in ``shared.adapters`` implement them (Table Storage, ACS Email, Teams Workflows) and
translate every SDK or HTTP error into the exceptions below, so the service never sees an SDK type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.alerts.records import AlertRecord
from shared.alerts.render_email import EmailContent
from shared.errors import ZtsError

__all__ = [
    "AlertStateStore",
    "DeliveryFailed",
    "EmailChannel",
    "StateStoreError",
    "StoredRecord",
    "TeamsChannel",
]


class DeliveryFailed(ZtsError):
    """A channel did not accept a message (after the adapter's own retries). ``reason`` is safe to
    show and store: adapters never put secrets (the webhook URL, keys) in it."""

    def __init__(self, channel: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason
        self.status = status


class StateStoreError(ZtsError):
    """The alert state store could not be read or written (not a lost race: that is
    :class:`shared.errors.ConcurrencyConflict`)."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    record: AlertRecord
    etag: str


class AlertStateStore(Protocol):
    """One record per fingerprint, written only conditionally so concurrent runs never both
    claim the same delivery."""

    def get(self, detection: str, fingerprint: str) -> StoredRecord | None: ...

    def insert(self, record: AlertRecord) -> str:
        """Create the record; its new ETag. ConcurrencyConflict when it already exists."""
        ...

    def replace(self, record: AlertRecord, etag: str) -> str:
        """Overwrite the record if it still has ``etag``; its new ETag. ConcurrencyConflict
        when it changed or vanished since it was read."""
        ...

    def open_records(self, detections: Iterable[str]) -> list[StoredRecord]:
        """Records of these detections whose status is open."""
        ...

    def held_records(self) -> list[StoredRecord]:
        """Records with a channel waiting for the digest."""
        ...


class EmailChannel(Protocol):
    def send(self, recipients: tuple[str, ...], content: EmailContent, *,
             operation_id: str) -> str:
        """Send and wait until the service accepted it; the operation id. DeliveryFailed."""
        ...


class TeamsChannel(Protocol):
    def post(self, message: Mapping[str, Any]) -> None:
        """Post a Workflows message (Adaptive Card); DeliveryFailed when not accepted."""
        ...
