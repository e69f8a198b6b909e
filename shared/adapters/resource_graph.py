"""Discovery through Azure Resource Graph (azure-mgmt-resourcegraph).

* One query per table and subscription batch, paged with ``$skipToken`` at 1,000 rows (the
  service maximum): a 100k-NIC tenant costs rows/1,000 requests, never one per resource.
* Throttling: azure-core's retry policy waits out ``429 Retry-After``; on top of that every
  response's ``x-ms-user-quota-remaining`` / ``x-ms-user-quota-resets-after`` are read, and when
  the quota is spent the next page waits for the window to reset instead of provoking a 429.
* Output rows are Resource Graph rows (id, name, type, location, resourceGroup, subscriptionId,
  tags, properties): the snapshot format the normalizer already reads.
* A batch that fails part-way reports its subscriptions as failed (never partially complete).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.resourcegraph import ResourceGraphClient

from shared.adapters.azure_clients import ArmSettings
from shared.domain.discovery import DiscoveryScope, SourceRead
from shared.domain.parsers import PARSERS
from shared.errors import SourceReadError, SourceUnavailable

PAGE_SIZE = 1000  # Resource Graph's maximum rows per response
API_VERSION = "2024-04-01"
SUBSCRIPTION_TYPE = "microsoft.resources/subscriptions"
RESOURCE_GROUP_TYPE = "microsoft.resources/subscriptions/resourcegroups"
CONTAINER_TYPES = (SUBSCRIPTION_TYPE, RESOURCE_GROUP_TYPE)
# subnets live inside their VNet's row in Resource Graph; containers come from ResourceContainers
_SUBNET_TYPE = "microsoft.network/virtualnetworks/subnets"
RESOURCE_TYPES = tuple(sorted(t for t in PARSERS if t not in (*CONTAINER_TYPES, _SUBNET_TYPE)))
COLUMNS = "id, name, type, tenantId, location, resourceGroup, subscriptionId, tags, properties"
_UNUSABLE = {401, 403, 404}  # denied, or the provider is not registered: use the fallback


def kql_string(value: str) -> str:
    """A KQL single-quoted string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def query_for(table: str, types: Sequence[str]) -> str:
    listed = ", ".join(kql_string(t) for t in types)
    return (f"{table} | where type in~ ({listed}) | project {COLUMNS} | order by id asc")


def parse_resets_after(text: str | None) -> float:
    """``x-ms-user-quota-resets-after`` (``hh:mm:ss``, maybe with fractions) in seconds."""
    if not text:
        return 0.0
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return 5.0  # the documented window length: waiting one window is the safe guess


class ResourceGraphSource:
    """A :class:`shared.ports.ResourceSource` over Resource Graph."""

    name = "resource-graph"

    def __init__(self, credential: TokenCredential, settings: ArmSettings | None = None, *,
                 page_size: int = PAGE_SIZE, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        settings = settings or ArmSettings()
        self._client = ResourceGraphClient(credential, **settings.client_kwargs())
        self._page_size = page_size
        self._sleep = sleep
        self._clock = clock
        self._quota_resets_at = 0.0
        self.requests = 0
        self.quota_waits: list[float] = []  # seconds waited for the quota window, per wait

    def close(self) -> None:
        self._client.close()

    # -- ResourceSource ----------------------------------------------------------------------

    def subscriptions(self, scope: DiscoveryScope) -> list[dict[str, Any]]:
        try:
            rows = list(self._rows(query_for("ResourceContainers", (SUBSCRIPTION_TYPE,)),
                                   subscriptions=scope.subscriptions or None,
                                   management_groups=(scope.management_group,)
                                   if scope.management_group else None))
        except SourceReadError as error:
            raise SourceUnavailable(f"Resource Graph: {error}") from None
        return rows

    def read(self, subscription_ids: Sequence[str]) -> SourceRead:
        out = SourceRead()
        if not subscription_ids:
            return out
        try:
            for table, types in (("Resources", RESOURCE_TYPES),
                                 ("ResourceContainers", (RESOURCE_GROUP_TYPE,))):
                out.rows.extend(self._rows(query_for(table, types),
                                           subscriptions=subscription_ids))
        except (SourceReadError, SourceUnavailable) as error:
            return SourceRead([], {s.lower(): f"Resource Graph: {error}" for s in subscription_ids})
        return out

    # -- paging and throttling ---------------------------------------------------------------

    def _rows(self, query: str, *, subscriptions: Sequence[str] | None = None,
              management_groups: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        token: str | None = None
        pages = 0
        while True:
            self._wait_for_quota()
            options: dict[str, Any] = {"$top": self._page_size, "resultFormat": "objectArray"}
            if token:
                options["$skipToken"] = token
            body: dict[str, Any] = {"query": query, "options": options}
            if subscriptions:
                body["subscriptions"] = list(subscriptions)
            if management_groups:
                body["managementGroups"] = list(management_groups)
            page, headers = self._call(body, pages)
            pages += 1
            self._note_quota(headers)
            data = page.get("data")
            if not isinstance(data, list):
                raise SourceReadError(f"page {pages}: 'data' is {type(data).__name__}, expected a "
                                      "list of rows (objectArray)")
            yield from data  # non-object rows are reported by the normalizer, not dropped here
            token = page.get("$skipToken") or None
            if not token:
                if str(page.get("resultTruncated", "")).lower() == "true":
                    raise SourceReadError("result truncated without a $skipToken (the query must "
                                          "project id)")
                return

    def _call(self, body: dict[str, Any], pages: int) -> tuple[dict[str, Any], Any]:
        """One query through the client's pipeline (credential, retries on 429/5xx honouring
        Retry-After). The JSON is read directly: the SDK's model deserializer walks every
        value of ``data`` and costs 3x the rest of the request at 1,000 rows a page."""
        self.requests += 1
        where = f"page {pages + 1}" if pages else "first request"
        request = HttpRequest("POST", "/providers/Microsoft.ResourceGraph/resources",
                              params={"api-version": API_VERSION}, json=body)
        try:
            response = self._client._send_request(request)
            response.raise_for_status()
            page = response.json()
        except ClientAuthenticationError as error:
            raise SourceUnavailable(f"authentication failed: {_first_line(error)}") from None
        except HttpResponseError as error:
            status = error.status_code or 0
            detail = _arm_error(error)
            if status in _UNUSABLE and not pages:
                raise SourceUnavailable(f"HTTP {status} on the {where}: {detail}") from None
            raise SourceReadError(f"HTTP {status} on {where} after retries: {detail}") from None
        except (ServiceRequestError, ServiceResponseError) as error:
            raise SourceUnavailable(f"unreachable: {_first_line(error)}") from None
        except ValueError as error:  # not JSON
            raise SourceReadError(f"{where}: the answer is not JSON: {error}") from None
        if not isinstance(page, dict):
            raise SourceReadError(f"{where}: the answer is {type(page).__name__}, not an object")
        return page, response.headers

    def _note_quota(self, headers: Any) -> None:
        remaining = headers.get("x-ms-user-quota-remaining")
        try:
            left = int(remaining) if remaining is not None else None
        except ValueError:
            left = None
        if left is not None and left <= 0:
            wait = parse_resets_after(headers.get("x-ms-user-quota-resets-after"))
            self._quota_resets_at = self._clock() + wait + random.uniform(0, 0.05)  # noqa: S311

    def _wait_for_quota(self) -> None:
        wait = self._quota_resets_at - self._clock()
        if wait > 0:
            self.quota_waits.append(wait)
            self._sleep(wait)
        self._quota_resets_at = 0.0


def _arm_error(error: HttpResponseError) -> str:
    """ARM's ``{"error": {"code", "message"}}`` when the body has one."""
    try:
        body = cast(HttpResponse, error.response).json() if error.response is not None else None
    except ValueError:
        body = None
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict) and inner.get("code"):
        return f"{inner.get('code')}: {str(inner.get('message', ''))[:300]}"
    return _first_line(error)


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
