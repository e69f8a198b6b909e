"""Re-read one resource by id through ARM (azure-mgmt-resource ``resources.get_by_id``).

Events carry no resource body, so the handler reads the resource as it is now: the answer, not
the event, decides between "write" and "gone" (a late write event for a deleted NIC reads 404 and
is handled as the deletion it now is).
"""

from __future__ import annotations

import threading
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.mgmt.resource.resources import ResourceManagementClient

from shared.adapters.azure_clients import ArmSettings, rest_json
from shared.domain import arm_id
from shared.errors import SourceReadError

API_VERSIONS = {  # the versions the parsers were written against
    "microsoft.network/networkinterfaces": "2024-05-01",
    "microsoft.network/virtualnetworks": "2024-05-01",
    "microsoft.network/networksecuritygroups": "2024-05-01",
    "microsoft.network/applicationsecuritygroups": "2024-05-01",
    "microsoft.network/privateendpoints": "2024-05-01",
    "microsoft.compute/virtualmachines": "2024-07-01",
}


class ArmResourceReader:
    """A :class:`shared.ports.ResourceReader` over ARM."""

    def __init__(self, credential: TokenCredential, settings: ArmSettings | None = None) -> None:
        self._credential = credential
        self._settings = settings or ArmSettings()
        self._clients: dict[str, ResourceManagementClient] = {}
        self._lock = threading.Lock()
        self.requests = 0

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def get(self, resource_id: str, resource_type: str) -> dict[str, Any] | None:
        version = API_VERSIONS.get(resource_type.lower())
        if version is None:
            raise ValueError(f"no API version known for {resource_type}")
        # get_by_id takes the whole id, so one client (one connection pool) serves every
        # subscription; the subscription it is built with is never used in the request path
        client = self._client(arm_id.parse(resource_id).subscription_id)
        self.requests += 1
        try:
            return rest_json(client.resources.get_by_id(resource_id, api_version=version))
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            status = getattr(error, "status_code", None)
            raise SourceReadError(f"{resource_id}: read failed"
                                  f"{f' (HTTP {status})' if status else ''}: {error}") from None

    def _client(self, subscription_id: str) -> ResourceManagementClient:
        with self._lock:
            client = self._clients.get("shared")
            if client is None:
                client = self._clients["shared"] = ResourceManagementClient(
                    self._credential, subscription_id, **self._settings.client_kwargs())
            return client
