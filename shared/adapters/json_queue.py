"""A Storage Queue of JSON messages, base64-encoded as the Functions queue trigger expects."""

from __future__ import annotations

import contextlib
import json
from typing import Any, Self

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

RESYNC_QUEUE = "zts-resync"


class JsonQueue:
    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue

    @classmethod
    def from_connection_string(cls, connection_string: str, name: str) -> Self:
        return cls(QueueClient.from_connection_string(
            connection_string, name, message_encode_policy=BinaryBase64EncodePolicy(),
            message_decode_policy=BinaryBase64DecodePolicy()))

    @classmethod
    def from_endpoint(cls, endpoint: str, name: str, credential: TokenCredential) -> Self:
        return cls(QueueClient(endpoint, name, credential=credential,
                               message_encode_policy=BinaryBase64EncodePolicy(),
                               message_decode_policy=BinaryBase64DecodePolicy()))

    def create(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._queue.create_queue()

    def send(self, body: dict[str, Any]) -> None:
        self._queue.send_message(json.dumps(body, sort_keys=True).encode())

    def receive(self, max_messages: int = 32) -> list[tuple[str, Any]]:
        out = []
        for message in self._queue.receive_messages(max_messages=max_messages):
            content = message.content
            out.append((content.decode() if isinstance(content, bytes) else str(content),
                        message))
        return out

    def delete(self, message: Any) -> None:
        self._queue.delete_message(message)

    def close(self) -> None:
        self._queue.close()
