"""Runs (resync and timer) and the lease that keeps two full runs from overlapping, in Table
Storage (``<prefix>Runs``).

* Run rows: PartitionKey ``run``, RowKey = run id; ``Status`` (queued, running, succeeded,
  failed, skipped), ``Trigger``, ``Scope`` and ``Summary`` (JSON), times, ``Error``.
* The lease: PartitionKey ``lease``, RowKey ``full-run``; ``Owner`` (run id) and ``ExpiresAt``.
  It is taken with a conditional insert, or by replacing an expired lease under its ETag, so of
  two runs racing for it exactly one wins; the holder releases it when done, and a crashed holder's
  lease expires.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

RUN_PARTITION = "run"
LEASE_PARTITION, LEASE_ROW = "lease", "full-run"
WATERMARK_PARTITION = "watermark"
DEFAULT_LEASE = timedelta(minutes=30)


class TableRunStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    @classmethod
    def from_connection_string(cls, connection_string: str, prefix: str = "zts") -> Self:
        return cls(_table(TableServiceClient.from_connection_string(connection_string),
                          f"{prefix}Runs"))

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: TokenCredential,
                      prefix: str = "zts") -> Self:
        return cls(_table(TableServiceClient(endpoint=endpoint, credential=credential),
                          f"{prefix}Runs"))

    def close(self) -> None:
        self._table.close()

    # -- runs --------------------------------------------------------------------------------

    def create(self, run_id: str, trigger: str, scope: dict[str, Any], *, dry_run: bool) -> None:
        self._table.create_entity({
            "PartitionKey": RUN_PARTITION, "RowKey": run_id, "Status": "queued",
            "Trigger": trigger, "Scope": json.dumps(scope, sort_keys=True), "DryRun": dry_run,
            "QueuedAt": datetime.now(UTC)})

    def update(self, run_id: str, status: str, *, summary: dict[str, Any] | None = None,
               error: str = "") -> None:
        entity: dict[str, Any] = {"PartitionKey": RUN_PARTITION, "RowKey": run_id,
                                  "Status": status, "UpdatedAt": datetime.now(UTC)}
        if summary is not None:
            entity["Summary"] = json.dumps(summary, sort_keys=True, default=str)[:30_000]
        if error:
            entity["Error"] = error[:30_000]
        self._table.upsert_entity(entity, mode=UpdateMode.MERGE)

    def get(self, run_id: str) -> dict[str, Any] | None:
        try:
            entity = self._table.get_entity(RUN_PARTITION, run_id)
        except ResourceNotFoundError:
            return None
        return {
            "id": run_id, "status": entity.get("Status"), "trigger": entity.get("Trigger"),
            "dryRun": bool(entity.get("DryRun")),
            "scope": json.loads(entity.get("Scope") or "{}"),
            "queuedAt": _iso(entity.get("QueuedAt")), "updatedAt": _iso(entity.get("UpdatedAt")),
            "summary": json.loads(entity["Summary"]) if entity.get("Summary") else None,
            "error": entity.get("Error") or None,
        }

    # -- watermarks -------------------------------------------------------------------------

    def watermark(self, name: str) -> datetime | None:
        try:
            entity = self._table.get_entity(WATERMARK_PARTITION, name)
        except ResourceNotFoundError:
            return None
        value = entity.get("Value")
        return value if isinstance(value, datetime) else None

    def set_watermark(self, name: str, value: datetime) -> None:
        self._table.upsert_entity({"PartitionKey": WATERMARK_PARTITION, "RowKey": name,
                                   "Value": value.astimezone(UTC)}, mode=UpdateMode.REPLACE)

    # -- the lease ---------------------------------------------------------------------------

    def acquire(self, owner: str, duration: timedelta = DEFAULT_LEASE) -> str | None:
        """Take the full-run lease for ``owner``; None if it was taken, else the holder."""
        now = datetime.now(UTC)
        lease = {"PartitionKey": LEASE_PARTITION, "RowKey": LEASE_ROW, "Owner": owner,
                 "ExpiresAt": now + duration}
        try:
            self._table.create_entity(lease)
            return None
        except ResourceExistsError:
            pass
        try:
            current = self._table.get_entity(LEASE_PARTITION, LEASE_ROW)
        except ResourceNotFoundError:
            return self.acquire(owner, duration)  # released meanwhile: try again
        expires = current.get("ExpiresAt")
        if isinstance(expires, datetime) and expires > now:
            return str(current.get("Owner", "?"))
        try:
            self._table.update_entity(lease, mode=UpdateMode.REPLACE,
                                      etag=current.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return self.holder() or "another run"
        return None

    def holder(self) -> str | None:
        try:
            current = self._table.get_entity(LEASE_PARTITION, LEASE_ROW)
        except ResourceNotFoundError:
            return None
        expires = current.get("ExpiresAt")
        if isinstance(expires, datetime) and expires <= datetime.now(UTC):
            return None
        return str(current.get("Owner", "?"))

    def release(self, owner: str) -> None:
        with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
            current = self._table.get_entity(LEASE_PARTITION, LEASE_ROW)
            if current.get("Owner") == owner:
                self._table.delete_entity(LEASE_PARTITION, LEASE_ROW,
                                          etag=current.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _table(service: TableServiceClient, name: str) -> TableClient:
    with contextlib.suppress(ResourceExistsError):
        service.create_table(name)
    return service.get_table_client(name)
