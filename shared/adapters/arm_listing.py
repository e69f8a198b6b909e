"""Discovery fallback: per-subscription ARM listings (azure-mgmt-network, azure-mgmt-resource).

Used when Resource Graph is denied or down. Each subscription is read with a handful of paged
list calls, a bounded number of subscriptions at a time; a subscription whose listing fails is
reported as failed (with the reason) and the others go on. Rows are ARM JSON as the REST API
returns it (the SDK models are raw mappings), which the normalizer reads unchanged.

Virtual machines come from the generic resource listing (``Microsoft.Compute`` is not a
dependency): id, name, location and tags, which is what grouping needs; the NIC side carries the
VM link.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
)
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient

from shared.adapters.azure_clients import ArmSettings, rest_json
from shared.domain.discovery import DiscoveryScope, SourceRead
from shared.errors import SourceUnavailable

VM_FILTER = "resourceType eq 'Microsoft.Compute/virtualMachines'"
DEFAULT_CONCURRENCY = 8


class ArmListingSource:
    """A :class:`shared.ports.ResourceSource` over per-subscription ARM list calls."""

    name = "arm"

    def __init__(self, credential: TokenCredential, settings: ArmSettings | None = None, *,
                 concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self._credential = credential
        self._settings = settings or ArmSettings()
        self._concurrency = max(1, concurrency)
        self.requests = 0  # list pages fetched
        self._lock = threading.Lock()

    # -- ResourceSource ----------------------------------------------------------------------

    def subscriptions(self, scope: DiscoveryScope) -> list[dict[str, Any]]:
        if scope.management_group:
            raise SourceUnavailable("a management-group scope needs Resource Graph; list the "
                                    "subscriptions explicitly to use the ARM fallback")
        client = SubscriptionClient(self._credential, **self._settings.client_kwargs())
        try:
            rows = self._list(client.subscriptions.list)
        except ClientAuthenticationError as error:
            raise SourceUnavailable(f"ARM: authentication failed: {error}") from None
        except (HttpResponseError, ServiceRequestError) as error:
            raise SourceUnavailable(f"ARM subscription listing failed: {_short(error)}") from None
        finally:
            client.close()
        if scope.subscriptions:
            wanted = {s.lower() for s in scope.subscriptions}
            rows = [r for r in rows if str(r.get("subscriptionId", "")).lower() in wanted]
        return rows

    def read(self, subscription_ids: Sequence[str]) -> SourceRead:
        out = SourceRead()
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            for sub, result in zip(subscription_ids, pool.map(self._read_one, subscription_ids),
                                   strict=True):
                if isinstance(result, str):
                    out.failed[sub.lower()] = result
                else:
                    out.rows.extend(result)
        return out

    # -- one subscription --------------------------------------------------------------------

    def _read_one(self, subscription_id: str) -> list[dict[str, Any]] | str:
        """Every modeled resource of one subscription, or why it could not be read."""
        kwargs = self._settings.client_kwargs()
        network = NetworkManagementClient(self._credential, subscription_id, **kwargs)
        resources = ResourceManagementClient(self._credential, subscription_id, **kwargs)
        listings: list[tuple[str, Callable[[], Iterable[Any]]]] = [
            ("virtual networks", network.virtual_networks.list_all),
            ("network interfaces", network.network_interfaces.list_all),
            ("network security groups", network.network_security_groups.list_all),
            ("application security groups", network.application_security_groups.list_all),
            ("private endpoints", network.private_endpoints.list_by_subscription),
            ("public IP addresses", network.public_ip_addresses.list_all),
            ("resource groups", resources.resource_groups.list),
            ("virtual machines", lambda: resources.resources.list(filter=VM_FILTER)),
        ]
        rows: list[dict[str, Any]] = []
        try:
            for what, call in listings:
                try:
                    rows.extend(self._list(call))
                except AzureError as error:
                    return f"ARM listing of {what} failed: {_short(error)}"
        finally:
            network.close()
            resources.close()
        return rows

    def _list(self, call: Callable[[], Iterable[Any]]) -> list[dict[str, Any]]:
        pager = call()
        rows: list[dict[str, Any]] = []
        by_page = getattr(pager, "by_page", None)
        pages = by_page() if callable(by_page) else [pager]
        for page in pages:
            with self._lock:
                self.requests += 1
            rows.extend(rest_json(item) for item in page)
        return rows


def _short(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    text = str(getattr(error, "message", None) or error).strip().splitlines()
    first = text[0][:300] if text else type(error).__name__
    return f"HTTP {status}: {first}" if status else first
