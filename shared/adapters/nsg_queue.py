"""Per-NSG reconcile requests on an Azure Storage Queue, coalesced through a Table marker.

A burst of events for one NSG (a deployment touching 50 NICs behind it) should cost one
reconcile, not 50. Before sending, the producer inserts a ``pending`` row for the NSG; if the row
already exists a request is on its way and the event is coalesced into it. The consumer removes
the marker *before* it reads and plans, so a change that arrives while it works queues a new
request rather than being lost. A marker older than ``stale_after`` (a producer that died
between marking and sending) is taken over and the request sent again.

Messages are base64-encoded JSON (the Functions queue trigger's default encoding):
``{"nsg": "<id>", "reason": "...", "event": "<event id>", "queuedAt": "<iso time>"}``.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
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
MARKER_PARTITION = "pending"
DEFAULT_STALE_AFTER = timedelta(minutes=15)


class StorageNsgQueue:
    """A :class:`shared.ports.NsgQueue` (producer side) and the consumer's marker release."""

    def __init__(self, queue: QueueClient, markers: TableClient, *,
                 stale_after: timedelta = DEFAULT_STALE_AFTER) -> None:
        self._queue = queue
        self._markers = markers
        self._stale_after = stale_after
        self.sent = 0
        self.coalesced = 0

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str = QUEUE_NAME,
                               table_name: str = "ztsPending") -> StorageNsgQueue:
        queue = QueueClient.from_connection_string(
            connection_string, queue_name, message_encode_policy=BinaryBase64EncodePolicy(),
            message_decode_policy=BinaryBase64DecodePolicy())
        service = TableServiceClient.from_connection_string(connection_string)
        return cls(queue, _table(service, table_name))

    @classmethod
    def from_endpoints(cls, queue_endpoint: str, table_endpoint: str, credential: Any,
                       queue_name: str = QUEUE_NAME,
                       table_name: str = "ztsPending") -> StorageNsgQueue:
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
        self._markers.close()

    def request(self, nsg_id: str, reason: str, event_id: str) -> bool:
        now = datetime.now(UTC)
        marker = {"PartitionKey": MARKER_PARTITION, "RowKey": encode_key(key(nsg_id)),
                  "NsgId": nsg_id, "Reason": reason[:1000], "EventId": event_id, "At": now}
        try:
            self._markers.create_entity(marker)
        except ResourceExistsError:
            if not self._take_over_stale(marker, now):
                self.coalesced += 1
                return False
        body = {"nsg": nsg_id, "reason": reason, "event": event_id, "queuedAt": now.isoformat()}
        self._queue.send_message(json.dumps(body, sort_keys=True).encode())
        self.sent += 1
        return True

    def release(self, nsg_id: str) -> None:
        """Consumer: the request is being handled; later changes must queue a new one."""
        with contextlib.suppress(ResourceNotFoundError):
            self._markers.delete_entity(MARKER_PARTITION, encode_key(key(nsg_id)))

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

    def _take_over_stale(self, marker: dict[str, Any], now: datetime) -> bool:
        try:
            current = self._markers.get_entity(MARKER_PARTITION, marker["RowKey"])
        except ResourceNotFoundError:
            return False  # released meanwhile: the consumer is on it and reads fresh state
        at = current.get("At")
        if not isinstance(at, datetime) or now - at < self._stale_after:
            return False
        try:
            self._markers.update_entity(marker, mode=UpdateMode.REPLACE,
                                        etag=current.metadata["etag"],
                                        match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False  # another producer took it over first
        return True


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
