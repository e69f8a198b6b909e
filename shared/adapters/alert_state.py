"""Alert dedup and suppression state in Azure Table Storage (azure-data-tables).

Table ``ztsAlerts`` by default (``ZTS_ALERT_TABLE``), created on first use. One entity per
fingerprint:

* PartitionKey = the detection id (``encode_key``), so resolution lists one detection's open
  records with a partition query; RowKey = the fingerprint (``encode_key``; fingerprints are hex);
* ``Detection``, ``ResourceId``, ``Title``, ``Severity``, ``Reach``, ``FirstSeen``, ``LastSeen``,
  ``SeenCount``, ``Status`` (open/resolved), ``ResolvedAt``, ``Held`` (some channel waits for the
  digest: the digest query filters on it);
* ``Channels``: JSON of the per-channel delivery state (sent, held, claim, failures);
* ``Finding``: JSON of the latest finding (what a digest or resolution notice shows), at most
  30,000 characters (a string property holds 32K UTF-16 characters).

Races are settled with ETags: :meth:`insert` is a create (409 when another run created it first),
:meth:`replace` is an update with ``If-Match`` (412 when another run wrote since the read). Both
surface as :class:`shared.errors.ConcurrencyConflict`; every other storage error as
:class:`shared.alerts.ports.StateStoreError`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.adapters.table_keys import encode_key
from shared.alerts.ports import StateStoreError, StoredRecord
from shared.alerts.records import AlertRecord, ChannelState
from shared.errors import ConcurrencyConflict

__all__ = ["DEFAULT_ALERT_TABLE", "TableAlertState"]

DEFAULT_ALERT_TABLE: Final = "ztsAlerts"
_TABLE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_TEXT_LIMIT: Final = 30_000


class TableAlertState:
    """A :class:`shared.alerts.ports.AlertStateStore` on one table."""

    def __init__(self, service: TableServiceClient, table_name: str = DEFAULT_ALERT_TABLE) -> None:
        if not _TABLE_NAME.fullmatch(table_name):
            raise ValueError(f"table name {table_name!r} must be 3-63 letters and digits, "
                             "starting with a letter")
        self._service = service
        self._name = table_name
        self._table: TableClient | None = None

    @classmethod
    def from_connection_string(cls, connection_string: str,
                               table_name: str = DEFAULT_ALERT_TABLE) -> Self:
        return cls(TableServiceClient.from_connection_string(connection_string), table_name)

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: TokenCredential,
                      table_name: str = DEFAULT_ALERT_TABLE) -> Self:
        return cls(TableServiceClient(endpoint=endpoint, credential=credential), table_name)

    @classmethod
    def from_env(cls, env: Mapping[str, str],
                 credential: Callable[[], TokenCredential]) -> Self | None:
        """``ZTS_ALERT_STATE_CONNECTION_STRING`` or ``ZTS_STORAGE_TABLE_ENDPOINT`` (with the
        managed identity), table ``ZTS_ALERT_TABLE``; None when neither is set."""
        table = env.get("ZTS_ALERT_TABLE") or DEFAULT_ALERT_TABLE
        if env.get("ZTS_ALERT_STATE_CONNECTION_STRING"):
            return cls.from_connection_string(env["ZTS_ALERT_STATE_CONNECTION_STRING"], table)
        if env.get("ZTS_STORAGE_TABLE_ENDPOINT"):
            return cls.from_endpoint(env["ZTS_STORAGE_TABLE_ENDPOINT"], credential(), table)
        return None

    def close(self) -> None:
        if self._table is not None:
            self._table.close()
        self._service.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- the port ----------------------------------------------------------------------------

    def get(self, detection: str, fingerprint: str) -> StoredRecord | None:
        try:
            entity = self._client().get_entity(encode_key(detection), encode_key(fingerprint))
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise StateStoreError(_describe(error)) from None
        return _stored(entity)

    def insert(self, record: AlertRecord) -> str:
        try:
            metadata = self._client().create_entity(_entity(record))
        except ResourceExistsError:
            raise ConcurrencyConflict(record.fingerprint, "created by another run") from None
        except AzureError as error:
            raise StateStoreError(_describe(error)) from None
        return str(metadata.get("etag", ""))

    def replace(self, record: AlertRecord, etag: str) -> str:
        try:
            metadata = self._client().update_entity(
                _entity(record), mode=UpdateMode.REPLACE, etag=etag,
                match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            raise ConcurrencyConflict(record.fingerprint,
                                      "changed by another run since it was read") from None
        except AzureError as error:
            raise StateStoreError(_describe(error)) from None
        return str(metadata.get("etag", ""))

    def open_records(self, detections: Iterable[str]) -> list[StoredRecord]:
        out = []
        for detection in sorted(set(detections)):
            out += self._query("PartitionKey eq @pk and Status eq @status",
                               {"pk": encode_key(detection), "status": "open"})
        return out

    def held_records(self) -> list[StoredRecord]:
        return self._query("Held eq @held", {"held": True})

    # -- helpers -----------------------------------------------------------------------------

    def _client(self) -> TableClient:
        if self._table is None:
            try:
                with contextlib.suppress(ResourceExistsError):
                    self._service.create_table(self._name)
            except AzureError as error:
                raise StateStoreError(_describe(error)) from None
            self._table = self._service.get_table_client(self._name)
        return self._table

    def _query(self, where: str, parameters: dict[str, Any]) -> list[StoredRecord]:
        try:
            entities = list(self._client().query_entities(where, parameters=parameters))
        except AzureError as error:
            raise StateStoreError(_describe(error)) from None
        out = []
        for entity in entities:
            with contextlib.suppress(StateStoreError):  # a corrupt row is skipped, not fatal
                out.append(_stored(entity))
        return sorted(out, key=lambda s: (s.record.detection, s.record.fingerprint))


def _describe(error: AzureError) -> str:
    status = getattr(error, "status_code", None)
    code = getattr(error, "error_code", None)
    return f"{type(error).__name__}" + (f" HTTP {status}" if status else "") + (
        f" {code}" if code else "")


def _text(value: str, limit: int = _TEXT_LIMIT) -> str:
    return value if len(value) <= limit else value[:limit]


def _entity(record: AlertRecord) -> dict[str, Any]:
    finding = json.dumps(record.finding, sort_keys=True, default=str)
    if len(finding) > _TEXT_LIMIT:
        finding = json.dumps({k: v for k, v in record.finding.items() if k != "evidence"},
                             sort_keys=True, default=str)[:_TEXT_LIMIT]
    entity: dict[str, Any] = {
        "PartitionKey": encode_key(record.detection), "RowKey": encode_key(record.fingerprint),
        "Detection": record.detection, "Fingerprint": record.fingerprint,
        "ResourceId": _text(record.resource_id), "Title": _text(record.title, 2000),
        "Severity": record.severity, "Reach": record.reach,
        "FirstSeen": record.first_seen.astimezone(UTC),
        "LastSeen": record.last_seen.astimezone(UTC), "SeenCount": record.seen_count,
        "Status": record.status, "Held": record.held, "Finding": finding,
        "Channels": json.dumps({n: s.as_json() for n, s in sorted(record.channels.items())},
                               sort_keys=True),
    }
    if record.resolved_at is not None:
        entity["ResolvedAt"] = record.resolved_at.astimezone(UTC)
    return entity


def _when(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise StateStoreError(f"not a time: {value!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _stored(entity: Any) -> StoredRecord:
    label = f"alert record {entity.get('Fingerprint', entity.get('RowKey'))}"
    try:
        channels = json.loads(entity.get("Channels") or "{}")
        finding = json.loads(entity.get("Finding") or "{}")
        record = AlertRecord(
            fingerprint=str(entity["Fingerprint"]), detection=str(entity["Detection"]),
            resource_id=str(entity.get("ResourceId", "")), title=str(entity.get("Title", "")),
            severity=str(entity["Severity"]), reach=int(entity.get("Reach") or 0),
            first_seen=_when(entity["FirstSeen"]), last_seen=_when(entity["LastSeen"]),
            seen_count=int(entity.get("SeenCount") or 0),
            status=str(entity.get("Status") or "open"),
            resolved_at=_when(entity["ResolvedAt"]) if entity.get("ResolvedAt") else None,
            finding=finding if isinstance(finding, dict) else {},
            channels={str(n): ChannelState.from_json(s) for n, s in channels.items()
                      if isinstance(s, dict)},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise StateStoreError(f"{label} is corrupt: {error}") from None
    return StoredRecord(record, str(entity.metadata.get("etag", "")))
