"""The inventory repository: raw ARM resources in Azure Table Storage (azure-data-tables).

Entity layout (one row per resource, case-insensitive identity):

* ``PartitionKey``: the lower-cased subscription id of the resource id (``/subscriptions/<id>/...``,
  the subscription row itself included); ids outside any subscription (management groups,
  tenant-level providers) go to :data:`TENANT_PARTITION`. One partition per subscription lets a
  run write, load and sweep a subscription with entity-group transactions and partition queries.
* ``RowKey``: :func:`~shared.adapters.table_keys.encode_key` of the lower-cased id
  (:func:`shared.domain.arm_id.key`), so ``/subscriptions/S/.../NSG1`` and ``.../nsg1`` are one row.
* ``ArmId`` (original casing), ``Type`` (lower-cased), ``Name``, ``RunId``, ``SeenAt`` (UTC).
* The resource JSON, gzip-compressed (``mtime=0``, so equal input gives equal bytes) and split into
  Binary properties ``Body0..BodyN`` of at most 64 KiB, with ``BodyParts`` and ``BodyFormat``. A
  string property holds at most 32K UTF-16 characters, and one NSG with 1,000 rules is far larger
  than that as JSON; compressed and chunked it fits comfortably.

Sizes are checked before anything is sent, against the stricter of two measures: what the
service counts for the 1 MiB entity limit (binary bytes, strings as UTF-16, per-property
overhead) and the JSON request body (binary as base64), which is what Azurite checks. A resource
that does not fit is reported as an error item, never a crash and never dropped silently.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, Final, Self, TypeVar

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import (
    TableClient,
    TableEntity,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

from shared.adapters.table_keys import encode_key
from shared.domain.arm_id import key as arm_key
from shared.domain.store_reports import BatchFailure, ItemError, SaveReport, SweepReport
from shared.errors import ConcurrencyConflict, ResourceNotStorable, ZtsError

__all__ = [
    "BODY_CHUNK_BYTES",
    "BODY_FORMAT",
    "DEFAULT_TABLE_NAME",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_OPERATIONS",
    "MAX_ENTITY_BYTES",
    "TENANT_PARTITION",
    "BatchFailure",
    "CorruptEntity",
    "ItemError",
    "SaveReport",
    "StoredResource",
    "SweepReport",
    "TableInventoryStore",
    "pack_json",
    "partition_key_for",
    "partition_key_for_subscription",
    "row_key_for",
    "unpack_json",
]

DEFAULT_TABLE_NAME: Final = "Inventory"
TENANT_PARTITION: Final = "_tenant"
"""Partition of ids outside any subscription; pass it to :meth:`TableInventoryStore.sweep` too."""

MAX_BATCH_OPERATIONS: Final = 100
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024 - 64 * 1024
"""4 MiB transaction payload limit, less a margin for the multipart envelope."""
MAX_ENTITY_BYTES: Final = 1024 * 1024
MAX_PROPERTY_BYTES: Final = 64 * 1024
BODY_CHUNK_BYTES: Final = 64 * 1024
BODY_FORMAT: Final = "json+gzip/1"
"""Names the body encoding, so a later format can be read side by side with this one."""

_OPERATION_OVERHEAD: Final = 2048  # changeset headers and request line (two keys ≤ 512 chars)
_SERVICE_ENTITY_OVERHEAD: Final = 4
_SERVICE_PROPERTY_OVERHEAD: Final = 8
_DATETIME_WIRE: Final = '"2000-01-01T00:00:00.0000000Z"'
_COMPRESS_LEVEL: Final = 6
_STALE_FILTER: Final = "PartitionKey eq @pk and RunId ne @run"
_STALE_BEFORE_FILTER: Final = "PartitionKey eq @pk and RunId ne @run and SeenAt lt @before"
_PARTITION_FILTER: Final = "PartitionKey eq @pk"

_T = TypeVar("_T")


class CorruptEntity(ZtsError):
    """A stored row cannot be turned back into its resource (missing part, bad gzip or JSON)."""


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One stored resource with the ETag needed for a conditional replace."""

    arm_id: str
    resource: dict[str, Any]
    run_id: str
    seen_at: datetime
    etag: str


@dataclass(frozen=True, slots=True)
class _Row:
    """A resource ready to write: its entity and the JSON size it has on the wire."""

    partition: str
    row: str
    arm_id: str
    entity: dict[str, Any] = field(repr=False)
    wire_bytes: int


def partition_key_for(arm_id: str) -> str:
    """The PartitionKey of a resource id: its lower-cased subscription id, or ``_tenant``."""
    parts = arm_key(arm_id).split("/")
    if len(parts) >= 3 and parts[0] == "" and parts[1] == "subscriptions" and parts[2]:
        return encode_key(parts[2])
    return TENANT_PARTITION


def partition_key_for_subscription(subscription_id: str) -> str:
    """The PartitionKey of a subscription id (``_tenant`` stands for itself)."""
    if subscription_id == TENANT_PARTITION:
        return TENANT_PARTITION
    return encode_key(subscription_id.strip().lower())


def row_key_for(arm_id: str) -> str:
    """The RowKey of a resource id: the encoded case-insensitive identity of the id."""
    return encode_key(arm_key(arm_id))


#: The row that changes with every write to the inventory (:meth:`TableInventoryStore.generation`).
#: Its PartitionKey cannot be a subscription's (``encode_key`` never yields ``~``).
GENERATION_PARTITION: Final = "~zts"
GENERATION_ROW: Final = "generation"


class TableInventoryStore:
    """Inventory rows in one table; the table is created on first use.

    Build it with :meth:`from_connection_string` (Azurite, development) or :meth:`from_endpoint`
    with a ``TokenCredential`` (production: managed identity, no account keys).
    """

    def __init__(
        self,
        service: TableServiceClient,
        table_name: str = DEFAULT_TABLE_NAME,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._service = service
        self.table_name = table_name
        self._clock = clock if clock is not None else _utc_now
        self._client: TableClient | None = None

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        table_name: str = DEFAULT_TABLE_NAME,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> Self:
        service = TableServiceClient.from_connection_string(connection_string)
        return cls(service, table_name, clock=clock)

    @classmethod
    def from_endpoint(
        cls,
        endpoint: str,
        credential: TokenCredential,
        table_name: str = DEFAULT_TABLE_NAME,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> Self:
        service = TableServiceClient(endpoint=endpoint, credential=credential)
        return cls(service, table_name, clock=clock)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._service.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    def save(self, resources: Iterable[Mapping[str, Any]], run_id: str) -> SaveReport:
        """Upsert (replace) every resource, tagged with ``run_id``, in per-partition transactions.

        A resource id seen twice is written once (the last occurrence wins, ids compared
        case-insensitively) and counted in ``duplicates``. A resource that cannot be stored is an
        :class:`ItemError`; a rejected transaction is a :class:`BatchFailure`; the rest still go.
        """
        _require_run_id(run_id)
        try:
            return self._save(resources, run_id)
        finally:
            self._bump_generation()

    def _save(self, resources: Iterable[Mapping[str, Any]], run_id: str) -> SaveReport:
        seen_at = self._clock()
        latest, errors, duplicates = _deduplicate(resources)
        rows: list[_Row] = []
        for label, resource in latest.values():
            try:
                rows.append(_build_row(resource, label, run_id, seen_at))
            except ResourceNotStorable as error:
                errors.append(ItemError(error.item_id, error.reason, _partition_or_none(label)))
        batches: dict[str, int] = defaultdict(int)
        failures: list[BatchFailure] = []
        written = 0
        for partition, batch in _plan_batches(rows):
            batches[partition] += 1
            failure = self._submit_upserts(partition, batch)
            if failure is None:
                written += len(batch)
            else:
                failures.append(failure)
        return SaveReport(
            written=written,
            duplicates=duplicates,
            batches=MappingProxyType(dict(batches)),
            errors=tuple(errors),
            failed_batches=tuple(failures),
        )

    def replace_if_match(
        self, arm_id: str, resource: Mapping[str, Any], run_id: str, etag: str
    ) -> str:
        """Replace the stored resource only if it still has ``etag``; return the new ETag.

        Raises :class:`ConcurrencyConflict` when the row changed (HTTP 412) or was deleted since
        it was read, and :class:`ResourceNotStorable` when ``resource`` cannot be stored.
        """
        _require_run_id(run_id)
        resource_id = resource.get("id")
        if not isinstance(resource_id, str) or arm_key(resource_id) != arm_key(arm_id):
            raise ResourceNotStorable(arm_id, f"resource id {resource_id!r} does not match")
        row = _build_row(resource, resource_id, run_id, self._clock())
        try:
            metadata = self._table().update_entity(
                row.entity,
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError as error:
            raise ConcurrencyConflict(arm_id, "changed since it was read (HTTP 412)") from error
        except ResourceNotFoundError as error:
            raise ConcurrencyConflict(arm_id, "deleted since it was read") from error
        finally:
            self._bump_generation()
        return str(metadata["etag"])

    def delete(self, arm_id: str) -> None:
        """Remove the row of ``arm_id`` (an event saw the resource gone). A missing row is no
        error: the Tables SDK treats HTTP 404 on a delete as done, so there is no "was it
        there" answer to give."""
        try:
            self._table().delete_entity(partition_key_for(arm_id), row_key_for(arm_id))
        finally:
            self._bump_generation()

    def sweep(
        self,
        run_id: str,
        subscription_ids: Iterable[str],
        *,
        seen_before: datetime | None = None,
    ) -> SweepReport:
        """Delete the rows of the given subscriptions whose ``RunId`` is not ``run_id``.

        Only the listed partitions are touched: a subscription whose discovery failed is not
        listed and keeps its rows. Deletes are conditional on the ETag that was read, so a row
        rewritten between this read and the delete survives.

        ``seen_before`` (the run's start time) also spares rows written *after* the run started
        by another writer, e.g. an event handler that re-read a resource and stored it under its
        own run id: without it, the sweep would delete that fresh row.
        """
        _require_run_id(run_id)
        try:
            return self._sweep(run_id, subscription_ids, seen_before)
        finally:
            self._bump_generation()

    def _sweep(self, run_id: str, subscription_ids: Iterable[str],
               seen_before: datetime | None) -> SweepReport:
        partitions = sorted({partition_key_for_subscription(s) for s in subscription_ids})
        deleted: dict[str, int] = {}
        kept_changed = 0
        failures: list[BatchFailure] = []
        for partition in partitions:
            stale = self._stale_rows(partition, run_id, seen_before)
            deleted[partition] = 0
            for batch in _chunks(stale, MAX_BATCH_OPERATIONS):
                gone, kept, failure = self._delete_batch(partition, batch)
                deleted[partition] += gone
                kept_changed += kept
                if failure is not None:
                    failures.append(failure)
        return SweepReport(
            deleted=sum(deleted.values()),
            deleted_per_partition=MappingProxyType(deleted),
            kept_changed=kept_changed,
            failures=tuple(failures),
        )

    # -- reading -----------------------------------------------------------------------------

    def load(self, subscription_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The stored resources, decompressed, ordered by (partition, row key).

        ``None`` loads every partition; otherwise only the given subscriptions (and ``_tenant``
        if listed).
        """
        table = self._table()
        if subscription_ids is None:
            entities: Iterable[TableEntity] = table.list_entities()
        else:
            partitions = sorted({partition_key_for_subscription(s) for s in subscription_ids})
            entities = (
                entity
                for partition in partitions
                for entity in table.query_entities(_PARTITION_FILTER, parameters={"pk": partition})
            )
        ordered = sorted((e for e in entities if e["PartitionKey"] != GENERATION_PARTITION),
                         key=lambda e: (str(e["PartitionKey"]), str(e["RowKey"])))
        return [_read_body(entity) for entity in ordered]

    def generation(self) -> str:
        """A token that changes with every write to the inventory (save, replace, delete,
        sweep; ``""`` before the first): a reader that read it *before* loading may reuse that
        load for as long as the token stays the same. Every writing method changes it after
        its writes, whether they succeeded or not, and raises if it cannot."""
        try:
            entity = self._table().get_entity(GENERATION_PARTITION, GENERATION_ROW)
        except ResourceNotFoundError:
            return ""
        return str(entity.get("Token", ""))

    def get(self, arm_id: str) -> StoredResource | None:
        """The stored resource with its ETag, or None when there is no row for ``arm_id``."""
        try:
            entity = self._table().get_entity(partition_key_for(arm_id), row_key_for(arm_id))
        except ResourceNotFoundError:
            return None
        stored_id = str(entity.get("ArmId", ""))
        if arm_key(stored_id) != arm_key(arm_id):
            raise CorruptEntity(f"row for {arm_id} holds {stored_id!r}")
        return StoredResource(
            arm_id=stored_id,
            resource=_read_body(entity),
            run_id=str(entity.get("RunId", "")),
            seen_at=_as_datetime(entity.get("SeenAt")),
            etag=str(entity.metadata["etag"]),
        )

    # -- service calls -----------------------------------------------------------------------

    def _bump_generation(self) -> None:
        """A new random token: never equal to one a reader holds (see :meth:`generation`)."""
        self._table().upsert_entity({"PartitionKey": GENERATION_PARTITION,
                                     "RowKey": GENERATION_ROW, "Token": uuid.uuid4().hex},
                                    mode=UpdateMode.REPLACE)

    def _table(self) -> TableClient:
        """The table client; the first call creates the table if it does not exist."""
        if self._client is None:
            self._client = self._service.create_table_if_not_exists(self.table_name)
        return self._client

    def _submit_upserts(self, partition: str, batch: Sequence[_Row]) -> BatchFailure | None:
        operations = [("upsert", row.entity, {"mode": UpdateMode.REPLACE}) for row in batch]
        try:
            if len(batch) == 1:  # an event's single row: a plain upsert, no multipart batch
                self._table().upsert_entity(batch[0].entity, mode=UpdateMode.REPLACE)
            else:
                self._table().submit_transaction(operations)
        except AzureError as error:
            ids = tuple(row.arm_id for row in batch)
            return BatchFailure(partition, _describe(error, ids), ids)
        return None

    def _stale_rows(
        self, partition: str, run_id: str, seen_before: datetime | None
    ) -> list[TableEntity]:
        parameters: dict[str, Any] = {"pk": partition, "run": run_id}
        query = _STALE_FILTER
        if seen_before is not None:
            parameters["before"] = seen_before.astimezone(UTC)
            query = _STALE_BEFORE_FILTER
        rows = self._table().query_entities(
            query, parameters=parameters, select=["PartitionKey", "RowKey", "ArmId"]
        )
        return sorted(rows, key=lambda e: str(e["RowKey"]))

    def _delete_batch(
        self, partition: str, batch: Sequence[TableEntity]
    ) -> tuple[int, int, BatchFailure | None]:
        """Delete ``batch`` in one transaction; if any row changed meanwhile (412) or is already
        gone (404), the transaction is void, so delete row by row and keep the changed ones.
        Returns (deleted, kept because changed, failure)."""
        operations = [
            (
                "delete",
                entity,
                {"etag": entity.metadata["etag"], "match_condition": MatchConditions.IfNotModified},
            )
            for entity in batch
        ]
        try:
            self._table().submit_transaction(operations)
        except TableTransactionError as error:
            if error.status_code not in (404, 412):
                return 0, 0, _batch_failure(partition, error, batch)
            return self._delete_one_by_one(partition, batch)
        except AzureError as error:
            return 0, 0, _batch_failure(partition, error, batch)
        return len(batch), 0, None

    def _delete_one_by_one(
        self, partition: str, batch: Sequence[TableEntity]
    ) -> tuple[int, int, BatchFailure | None]:
        deleted = kept = 0
        failed: list[TableEntity] = []
        last_error: AzureError | None = None
        for entity in batch:
            try:
                self._table().delete_entity(
                    entity,
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                deleted += 1
            except ResourceModifiedError:
                kept += 1
            except ResourceNotFoundError:
                pass  # somebody else deleted it: the goal is reached
            except AzureError as error:
                failed.append(entity)
                last_error = error
        if last_error is None:
            return deleted, kept, None
        return deleted, kept, _batch_failure(partition, last_error, failed)


# -- pure helpers ------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _require_run_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not run_id.strip():
        raise ValueError("run_id must be a non-empty string (an empty one would sweep everything)")


def _item_label(resource: object) -> str | None:
    """The resource's id, or None when it has no usable one."""
    if isinstance(resource, Mapping):
        resource_id = resource.get("id")
        if isinstance(resource_id, str) and arm_key(resource_id):
            return resource_id
    return None


def _deduplicate(
    resources: Iterable[Mapping[str, Any]],
) -> tuple[dict[tuple[str, str], tuple[str, Mapping[str, Any]]], list[ItemError], int]:
    """Keep the last occurrence of each id (case-insensitive) in first-seen order; items with no
    usable id become errors. Returns (latest by key, errors, number of duplicates)."""
    latest: dict[tuple[str, str], tuple[str, Mapping[str, Any]]] = {}
    errors: list[ItemError] = []
    duplicates = 0
    for index, resource in enumerate(resources):
        label = _item_label(resource)
        if label is None:
            reason = "not a JSON object" if not isinstance(resource, Mapping) else "no 'id'"
            errors.append(ItemError(f"<item {index}>", reason))
            continue
        keys = (partition_key_for(label), row_key_for(label))
        if keys in latest:
            duplicates += 1
        latest[keys] = (label, resource)
    return latest, errors, duplicates


def _partition_or_none(arm_id: str) -> str | None:
    return partition_key_for(arm_id) if arm_key(arm_id) else None


def _build_row(resource: Mapping[str, Any], arm_id: str, run_id: str, seen_at: datetime) -> _Row:
    """The entity for ``resource``; :class:`ResourceNotStorable` says why it cannot be stored."""
    try:
        packed, compressed = pack_json(resource)
    except (TypeError, ValueError) as error:
        raise ResourceNotStorable(arm_id, f"not JSON-serializable: {error}") from None
    entity: dict[str, Any] = {
        "PartitionKey": partition_key_for(arm_id),
        "RowKey": row_key_for(arm_id),
        "ArmId": arm_id,
        "Type": str(resource.get("type") or "").lower(),
        "Name": str(resource.get("name") or ""),
        "RunId": run_id,
        "SeenAt": seen_at.astimezone(UTC),
        **packed,
    }
    _check_sizes(entity, arm_id, compressed)
    return _Row(entity["PartitionKey"], entity["RowKey"], arm_id, entity, _wire_size(entity))


def pack_json(value: Any, prefix: str = "Body") -> tuple[dict[str, Any], int]:
    """``value`` as gzipped JSON in Binary properties ``<prefix>0..N`` (64 KiB each) plus
    ``<prefix>Parts`` and ``<prefix>Format``; also returns the compressed size. Raises TypeError
    or ValueError for values JSON cannot hold."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    body = gzip.compress(text.encode("utf-8"), compresslevel=_COMPRESS_LEVEL, mtime=0)
    parts = [body[i : i + BODY_CHUNK_BYTES] for i in range(0, len(body), BODY_CHUNK_BYTES)]
    packed: dict[str, Any] = {f"{prefix}Format": BODY_FORMAT, f"{prefix}Parts": len(parts)}
    packed.update({f"{prefix}{i}": part for i, part in enumerate(parts)})
    return packed, len(body)


def unpack_json(entity: Mapping[str, Any], label: str, prefix: str = "Body") -> Any:
    """The value :func:`pack_json` stored; :class:`CorruptEntity` when it is damaged."""
    if entity.get(f"{prefix}Format") != BODY_FORMAT:
        raise CorruptEntity(f"{label}: unknown body format {entity.get(f'{prefix}Format')!r}")
    count = entity.get(f"{prefix}Parts")
    if not isinstance(count, int) or count < 1:
        raise CorruptEntity(f"{label}: bad {prefix}Parts {count!r}")
    parts: list[bytes] = []
    for i in range(count):
        part = entity.get(f"{prefix}{i}")
        if not isinstance(part, bytes):
            raise CorruptEntity(f"{label}: body part {i} is missing or not binary")
        parts.append(part)
    try:
        return json.loads(gzip.decompress(b"".join(parts)))
    except (OSError, EOFError, zlib.error, ValueError) as error:
        raise CorruptEntity(f"{label}: body does not decode: {error}") from None


def _check_sizes(entity: Mapping[str, Any], arm_id: str, compressed: int) -> None:
    for name, value in entity.items():
        if isinstance(value, str) and _utf16_bytes(value) > MAX_PROPERTY_BYTES:
            raise ResourceNotStorable(arm_id, f"property {name} is larger than 64 KiB")
    size = max(_service_size(entity), _wire_size(entity))
    if size > MAX_ENTITY_BYTES:
        raise ResourceNotStorable(
            arm_id,
            f"entity would be {size:,} bytes ({compressed:,} bytes of compressed JSON), over the "
            f"{MAX_ENTITY_BYTES:,}-byte Table Storage entity limit",
        )


def _utf16_bytes(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass"))


def _service_size(entity: Mapping[str, Any]) -> int:
    """Entity size as the service counts it: 4 + 2 x len(PK + RK) + per property
    (8 + 2 x len(name) + value), value = 4 + UTF-16 bytes for strings, 4 + length for binary,
    8 for DateTime, 4 for Int32."""
    size = _SERVICE_ENTITY_OVERHEAD
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            size += _utf16_bytes(value)
            continue
        size += _SERVICE_PROPERTY_OVERHEAD + _utf16_bytes(name)
        if isinstance(value, str):
            size += 4 + _utf16_bytes(value)
        elif isinstance(value, bytes):
            size += 4 + len(value)
        else:  # datetime or int
            size += 8
    return size


def _wire_size(entity: Mapping[str, Any]) -> int:
    """Bytes of the entity's JSON body as the SDK sends it: ``json.dumps`` defaults (ASCII,
    ``", "`` and ``": "`` separators), binary as base64 and ``@odata.type`` annotations."""
    size = 2  # {}
    for name, value in entity.items():
        if isinstance(value, bytes):
            literal = 2 + 4 * math.ceil(len(value) / 3)
        elif isinstance(value, datetime):
            literal = len(_DATETIME_WIRE)
        else:
            literal = len(json.dumps(value))
        # '"name": literal, "name@odata.type": "Edm.Binary", ' (annotation counted for every
        # property: an upper bound that keeps the estimate simple)
        size += len(json.dumps(name)) + 2 + literal + 2
        size += len(json.dumps(name + "@odata.type")) + 2 + len('"Edm.DateTime"') + 2
    return size


def _plan_batches(rows: Iterable[_Row]) -> Iterator[tuple[str, list[_Row]]]:
    """Transactions: one partition each, rows in RowKey order, at most 100 operations and
    :data:`MAX_BATCH_BYTES` of payload."""
    by_partition: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        by_partition[row.partition].append(row)
    for partition in sorted(by_partition):
        batch: list[_Row] = []
        payload = 0
        for row in sorted(by_partition[partition], key=lambda r: r.row):
            cost = row.wire_bytes + _OPERATION_OVERHEAD
            if batch and (len(batch) == MAX_BATCH_OPERATIONS or payload + cost > MAX_BATCH_BYTES):
                yield partition, batch
                batch, payload = [], 0
            batch.append(row)
            payload += cost
        if batch:
            yield partition, batch


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _describe(error: AzureError, arm_ids: Sequence[str]) -> str:
    """A one-line reason: error code, first message line, and the failing id when known."""
    code = getattr(error, "error_code", None)
    code_text = getattr(code, "value", code)
    message = str(getattr(error, "message", None) or error).splitlines()[0]
    reason = f"{code_text}: {message}" if code_text else message
    if isinstance(error, TableTransactionError) and len(arm_ids) > 1:
        index = error.index
        if 0 <= index < len(arm_ids):
            reason += f" (operation {index}: {arm_ids[index]})"
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        reason = f"HTTP {error.status_code} {reason}"
    return reason


def _batch_failure(
    partition: str, error: AzureError, entities: Sequence[TableEntity]
) -> BatchFailure:
    ids = tuple(str(entity.get("ArmId", entity["RowKey"])) for entity in entities)
    return BatchFailure(partition, _describe(error, ids), ids)


def _read_body(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The resource JSON held by a stored entity; :class:`CorruptEntity` when it is damaged."""
    label = str(entity.get("ArmId") or entity.get("RowKey"))
    resource = unpack_json(entity, label)
    if not isinstance(resource, dict):
        raise CorruptEntity(f"{label}: body is not a JSON object")
    return resource


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    raise CorruptEntity(f"SeenAt is not a DateTime: {value!r}")
