"""Read and write NSGs through azure-mgmt-network, conditionally on their etag.

* ``write`` PUTs the whole NSG with ``If-Match: <etag>`` (the operation has no typed etag
  parameter, so the header is passed through; 412 means someone wrote in between) and polls the
  ``Azure-AsyncOperation`` to completion, for at most ``lro_timeout`` seconds.
* 412 -> :class:`ConcurrencyConflict`; an operation still running at the deadline ->
  :class:`WriteOutcomeUnknown` (the caller re-reads); any other refusal or failed operation ->
  :class:`NsgWriteFailed` with the status and ARM's message. Throttling and transient 5xx are
  retried by azure-core before any of this surfaces.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import NetworkSecurityGroup

from shared.adapters.azure_clients import ArmSettings, rest_json
from shared.domain import arm_id
from shared.errors import ConcurrencyConflict, NsgNotFound, NsgWriteFailed, WriteOutcomeUnknown

DEFAULT_LRO_TIMEOUT = 600.0  # seconds; NSG updates usually finish in seconds


class ArmNsgGateway:
    """A :class:`shared.ports.NsgGateway` over ARM."""

    def __init__(self, credential: TokenCredential, settings: ArmSettings | None = None, *,
                 lro_timeout: float = DEFAULT_LRO_TIMEOUT) -> None:
        self._credential = credential
        self._settings = settings or ArmSettings()
        self._lro_timeout = lro_timeout
        self._clients: dict[str, NetworkManagementClient] = {}
        self._lock = threading.Lock()
        self.reads = 0
        self.writes = 0

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def read(self, nsg_id: str) -> dict[str, Any]:
        parsed = arm_id.parse(nsg_id)
        client = self._client(parsed.subscription_id)
        self.reads += 1
        try:
            nsg = client.network_security_groups.get(parsed.resource_group or "", parsed.name)
        except ResourceNotFoundError:
            raise NsgNotFound(f"{nsg_id}: not found") from None
        except HttpResponseError as error:
            raise NsgWriteFailed(nsg_id, f"read failed: {_message(error)}",
                                 error.status_code) from None
        except AzureError as error:
            raise NsgWriteFailed(nsg_id, f"read failed: {_message(error)}") from None
        return rest_json(nsg)

    def write(self, nsg_id: str, body: Mapping[str, Any], etag: str) -> dict[str, Any]:
        parsed = arm_id.parse(nsg_id)
        client = self._client(parsed.subscription_id)
        self.writes += 1
        try:
            poller = client.network_security_groups.begin_create_or_update(
                parsed.resource_group or "", parsed.name, NetworkSecurityGroup(dict(body)),
                headers={"If-Match": etag})
        except HttpResponseError as error:
            if error.status_code == 412:
                raise ConcurrencyConflict(nsg_id, "etag changed since it was read (HTTP 412): "
                                          "someone else wrote this NSG") from None
            raise NsgWriteFailed(nsg_id, _message(error), error.status_code) from None
        except AzureError as error:
            raise NsgWriteFailed(nsg_id, _message(error)) from None
        try:
            poller.wait(timeout=self._lro_timeout)
            if not poller.done():
                raise WriteOutcomeUnknown(
                    f"{nsg_id}: the update was accepted but had not finished after "
                    f"{self._lro_timeout:g} s")
            return rest_json(poller.result())
        except HttpResponseError as error:
            raise NsgWriteFailed(nsg_id, f"operation failed: {_message(error)}",
                                 error.status_code) from None
        except AzureError as error:
            raise NsgWriteFailed(nsg_id, f"operation failed: {_message(error)}") from None

    def _client(self, subscription_id: str) -> NetworkManagementClient:
        with self._lock:
            client = self._clients.get(subscription_id.lower())
            if client is None:
                client = self._clients[subscription_id.lower()] = NetworkManagementClient(
                    self._credential, subscription_id, **self._settings.client_kwargs())
            return client


def _message(error: Exception) -> str:
    text = str(getattr(error, "message", None) or error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
