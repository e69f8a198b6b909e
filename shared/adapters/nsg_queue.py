"""Per-NSG reconcile requests on an Azure Storage Queue, coalesced by the consumer.

A burst of events for one NSG (a deployment touching 50 NICs behind it) must cost one reconcile,
not 50, and the producer (the event handler) must stay cheap: it sends one message per NSG and
nothing else. Coalescing happens where it is safe to decide, at the consumer:

* before reconciling, the consumer records a *start* in the NSG's row (``<prefix>Reconciled``
  table) and reads the row back for the service's timestamp; the inventory is read after that;
* when the reconcile succeeds, that start becomes the row's ``LastGoodStart``;
* a message the queue service inserted before the last good start (with a margin for the small
  clock difference between the Queue and Table services of one account) describes a change that
  reconcile already saw, so it is acknowledged without work. A failed reconcile records nothing,
  so its own retries and the messages behind it are never skipped.

Messages are base64-encoded JSON (the Functions queue trigger's default encoding):
``{"nsg": "<id>", "reason": "...", "event": "<event id>", "queuedAt": "<iso time>"}``.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.queue import (
    BinaryBase64DecodePolicy,
    BinaryBase64EncodePolicy,
    QueueClient,
)

from shared.adapters.table_keys import encode_key
from shared.domain.arm_id import key

QUEUE_NAME = "nsg-reconcile"
POISON_QUEUE_NAME = f"{QUEUE_NAME}-poison"
STATE_PARTITION = "nsg"
CLOCK_MARGIN = timedelta(seconds=2)  # Queue vs Table service clocks, and the Date header's 1 s


class StorageNsgQueue:
    """A :class:`shared.ports.NsgQueue` (producer) and the consumer's coalescing record."""

    def __init__(self, queue: QueueClient, state: TableClient) -> None:
        self._queue = queue
        self._state = state
        self.sent = 0

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str = QUEUE_NAME,
                               table_name: str = "ztsReconciled") -> StorageNsgQueue:
        queue = QueueClient.from_connection_string(
            connection_string, queue_name, message_encode_policy=BinaryBase64EncodePolicy(),
            message_decode_policy=BinaryBase64DecodePolicy())
        service = TableServiceClient.from_connection_string(connection_string)
        return cls(queue, _table(service, table_name))

    @classmethod
    def from_endpoints(cls, queue_endpoint: str, table_endpoint: str, credential: Any,
                       queue_name: str = QUEUE_NAME,
                       table_name: str = "ztsReconciled") -> StorageNsgQueue:
        queue = QueueClient(queue_endpoint, queue_name, credential=credential,
                            message_encode_policy=BinaryBase64EncodePolicy(),
                            message_decode_policy=BinaryBase64DecodePolicy())
        service = TableServiceClient(endpoint=table_endpoint, credential=credential)
        return cls(queue, _table(service, table_name))

    def create_queue(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._queue.create_queue()

    def close(self) -> None:
        self._queue.close()
        self._state.close()

    # -- producer ----------------------------------------------------------------------------

    def request(self, nsg_id: str, reason: str, event_id: str) -> bool:
        body = {"nsg": nsg_id, "reason": reason, "event": event_id,
                "queuedAt": datetime.now(UTC).isoformat()}
        self._queue.send_message(json.dumps(body, sort_keys=True).encode())
        self.sent += 1
        return True

    # -- consumer ----------------------------------------------------------------------------

    def covered(self, nsg_id: str, inserted_at: datetime | None) -> bool:
        """True when a reconcile that started after this message was inserted succeeded."""
        if inserted_at is None:
            return False  # no service time to compare: do the work
        try:
            row = self._state.get_entity(STATE_PARTITION, encode_key(key(nsg_id)))
        except ResourceNotFoundError:
            return False
        good = row.get("LastGoodStart")
        return isinstance(good, datetime) and inserted_at < good - CLOCK_MARGIN

    def begin(self, nsg_id: str) -> datetime:
        """Record a start; returns the service's time of it (read before the inventory)."""
        row_key = encode_key(key(nsg_id))
        self._state.upsert_entity({"PartitionKey": STATE_PARTITION, "RowKey": row_key,
                                   "NsgId": nsg_id, "Started": True}, mode=UpdateMode.MERGE)
        stamp = self._state.get_entity(STATE_PARTITION, row_key).metadata.get("timestamp")
        return stamp if isinstance(stamp, datetime) else datetime.now(UTC)

    def done(self, nsg_id: str, started: datetime) -> None:
        """The reconcile that began at ``started`` succeeded: it covers older messages."""
        self._state.upsert_entity({"PartitionKey": STATE_PARTITION,
                                   "RowKey": encode_key(key(nsg_id)), "LastGoodStart": started},
                                  mode=UpdateMode.MERGE)

    def receive(self, max_messages: int = 32) -> list[tuple[str, Any]]:
        """(text, message) pairs waiting on the queue (tests and the local runner)."""
        out = []
        for message in self._queue.receive_messages(max_messages=max_messages):
            content = message.content
            text = content.decode() if isinstance(content, bytes) else str(content)
            out.append((text, message))
        return out

    def delete(self, message: Any) -> None:
        self._queue.delete_message(message)


def parse_message(text: str) -> tuple[str, str, str]:
    """(nsg id, reason, event id) of a reconcile message; ValueError says what is wrong."""
    try:
        body = json.loads(text)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(body, dict) or not isinstance(body.get("nsg"), str) or not body["nsg"]:
        raise ValueError('expected {"nsg": "<NSG id>", ...}')
    key(body["nsg"])
    return body["nsg"], str(body.get("reason", "")), str(body.get("event", ""))


def _table(service: TableServiceClient, name: str) -> TableClient:
    with contextlib.suppress(ResourceExistsError):
        service.create_table(name)
    return service.get_table_client(name)
