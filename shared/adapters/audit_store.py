"""Plans, the audit trail and the last-written rules per NSG, in Azure Table Storage.

Tables (created on first use, names ``<prefix>Plans``, ``<prefix>Audit``, ``<prefix>NsgState``):

* Plans: PartitionKey ``plan``, RowKey = plan id (``YYYYMMDDTHHMMSSZ-<hex>``, sortable by time);
  the plan document gzipped in ``Body*`` properties, plus ``CreatedAt``, ``Trigger``, ``Actor``,
  ``Summary`` for listings.
* Audit: PartitionKey = plan id, RowKey ``<attempt>~<encoded NSG id>``; result, trigger, actor,
  time, message, and the owned rules before/after (gzipped JSON in ``Before*``/``After*``).
* NsgState: PartitionKey ``nsg``, RowKey = encoded NSG id; the owned rules zts last wrote
  (``Rules*``) and the plan that wrote them. Drift is measured against these.

Large rule lists (1,000 rules) fit because bodies use the inventory store's packing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.adapters.table_keys import encode_key
from shared.adapters.table_store import CorruptEntity, pack_json, unpack_json
from shared.domain.arm_id import key as arm_key
from shared.domain.audit import AuditEntry

PLAN_PARTITION = "plan"
STATE_PARTITION = "nsg"


class TableAuditLog:
    """A :class:`shared.ports.AuditLog` in three tables of one storage account."""

    def __init__(self, service: TableServiceClient, prefix: str = "zts") -> None:
        if not prefix.isalnum():
            raise ValueError(f"table prefix {prefix!r} must be alphanumeric")
        self._service = service
        self._prefix = prefix
        self._tables: dict[str, TableClient] = {}

    @classmethod
    def from_connection_string(cls, connection_string: str, prefix: str = "zts") -> Self:
        return cls(TableServiceClient.from_connection_string(connection_string), prefix)

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: TokenCredential,
                      prefix: str = "zts") -> Self:
        return cls(TableServiceClient(endpoint=endpoint, credential=credential), prefix)

    def close(self) -> None:
        for table in self._tables.values():
            table.close()
        self._service.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- plans -------------------------------------------------------------------------------

    def save_plan(self, plan_id: str, document: Mapping[str, Any]) -> None:
        packed, _ = pack_json(dict(document))
        summary = document.get("summary", {})
        self._table("Plans").upsert_entity({
            "PartitionKey": PLAN_PARTITION, "RowKey": _plan_key(plan_id),
            "CreatedAt": datetime.now(UTC), "Trigger": str(document.get("trigger", "")),
            "Actor": str(document.get("actor", "")),
            "Summary": json.dumps(summary, sort_keys=True)[:30_000], **packed,
        }, mode=UpdateMode.REPLACE)

    def get_plan(self, plan_id: str) -> dict[str, Any] | None:
        try:
            entity = self._table("Plans").get_entity(PLAN_PARTITION, _plan_key(plan_id))
        except ResourceNotFoundError:
            return None
        value = unpack_json(entity, f"plan {plan_id}")
        if not isinstance(value, dict):
            raise CorruptEntity(f"plan {plan_id}: body is not a JSON object")
        return value

    def list_plans(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._table("Plans").query_entities(
            "PartitionKey eq @pk", parameters={"pk": PLAN_PARTITION},
            select=["RowKey", "CreatedAt", "Trigger", "Actor", "Summary"])
        listed = sorted(rows, key=lambda e: str(e["RowKey"]), reverse=True)[:limit]
        return [{"id": e["RowKey"], "createdAt": str(e.get("CreatedAt", "")),
                 "trigger": e.get("Trigger", ""), "actor": e.get("Actor", ""),
                 "summary": json.loads(e.get("Summary") or "{}")} for e in listed]

    # -- audit trail -------------------------------------------------------------------------

    def record(self, entry: AuditEntry) -> None:
        before, _ = pack_json(entry.before, "Before")
        after, _ = pack_json(entry.after, "After")
        self._table("Audit").upsert_entity({
            "PartitionKey": _plan_key(entry.plan_id),
            "RowKey": f"{entry.attempt:03d}~{encode_key(arm_key(entry.nsg_id))}",
            "NsgId": entry.nsg_id, "Attempt": entry.attempt, "Result": entry.result,
            "Trigger": entry.trigger, "Actor": entry.actor, "At": entry.at.astimezone(UTC),
            "Message": entry.message[:30_000], **before, **after,
        }, mode=UpdateMode.REPLACE)

    def entries(self, plan_id: str) -> list[dict[str, Any]]:
        rows = self._table("Audit").query_entities(
            "PartitionKey eq @pk", parameters={"pk": _plan_key(plan_id)})
        out = []
        for e in sorted(rows, key=lambda e: (str(e["NsgId"]).lower(), int(e["Attempt"]))):
            label = f"audit {plan_id}/{e['RowKey']}"
            out.append({
                "planId": plan_id, "nsg": e["NsgId"], "attempt": e["Attempt"],
                "result": e["Result"], "trigger": e["Trigger"], "actor": e["Actor"],
                "at": str(e.get("At", "")), "message": e.get("Message", ""),
                "before": unpack_json(e, label, "Before"),
                "after": unpack_json(e, label, "After"),
            })
        return out

    # -- last written rules per NSG ----------------------------------------------------------

    def last_written(self, nsg_id: str) -> list[dict[str, Any]] | None:
        try:
            entity = self._table("NsgState").get_entity(STATE_PARTITION,
                                                        encode_key(arm_key(nsg_id)))
        except ResourceNotFoundError:
            return None
        value = unpack_json(entity, f"state of {nsg_id}", "Rules")
        if not isinstance(value, list):
            raise CorruptEntity(f"state of {nsg_id}: rules are not a JSON array")
        return [r for r in value if isinstance(r, dict)]

    def set_written(self, nsg_id: str, rules: Sequence[Mapping[str, Any]], plan_id: str) -> None:
        packed, _ = pack_json([dict(r) for r in rules], "Rules")
        self._table("NsgState").upsert_entity({
            "PartitionKey": STATE_PARTITION, "RowKey": encode_key(arm_key(nsg_id)),
            "NsgId": nsg_id, "PlanId": plan_id, "At": datetime.now(UTC), **packed,
        }, mode=UpdateMode.REPLACE)

    def _table(self, name: str) -> TableClient:
        table = self._tables.get(name)
        if table is None:
            full = f"{self._prefix}{name}"
            with contextlib.suppress(ResourceExistsError):
                self._service.create_table(full)
            table = self._tables[name] = self._service.get_table_client(full)
        return table


def _plan_key(plan_id: str) -> str:
    if not plan_id or not all(c.isalnum() or c in "-_." for c in plan_id):
        raise ValueError(f"plan id {plan_id!r} must be letters, digits, '-', '_' or '.'")
    return plan_id
