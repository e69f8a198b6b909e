"""An HTTPS fake of the Azure REST APIs zts calls, good enough for the real SDK clients.

One :class:`FakeAzure` serves, on ``https://127.0.0.1:<free port>`` with a throw-away CA
(``trustme``), the documented wire protocol of:

* the App Service managed identity endpoint (``GET /msi/token``), so ``DefaultAzureCredential``
  works with ``IDENTITY_ENDPOINT=<url>/msi/token``, ``IDENTITY_HEADER=<anything>`` and
  ``REQUESTS_CA_BUNDLE=<ca_path>``;
* Azure Resource Graph (``POST /providers/Microsoft.ResourceGraph/resources``) with ``$top``,
  opaque ``$skipToken`` paging and the per-user quota headers / 429 throttling;
* ``GET /subscriptions`` and per-subscription ARM lists (``/resourcegroups``, ``/resources`` with
  a ``resourceType eq`` filter, ``/providers/{namespace}/{type}``, also per resource group), paged
  with absolute ``nextLink`` URLs;
* network security groups: ``GET``/``PUT`` with ``If-Match`` (412 on a stale etag), ARM-like
  validation of the security rules and the ``Azure-AsyncOperation`` long-running-operation
  protocol.

Every endpoint except the token endpoint requires ``Authorization: Bearer fake-token``.

The state is seeded from raw Azure Resource Graph rows (``shared/sample/data/estate.json`` or
``shared.sample.estate.scaled_estate``). Rows are sorted once by lower-case id and indexed by type
and by (subscription, type) at construction, so a quarter of a million rows are served page by
page without re-scanning. Stored rows are never mutated in place (an NSG write stores a new dict),
so responses are serialised outside the lock.

The fake does not execute KQL. It reads the table from the first word of the query
(``Resources`` or ``ResourceContainers``) and the resource types from the first
``type in~ ('a', 'b')`` (or ``type =~ 'a'`` / ``type == 'a'``) clause, and returns the whole rows
(ARG shape, without ``etag``) of that table, ordered by id. Projections, joins and other filters
are ignored.

Long-running NSG writes: the PUT stores the new rules at once (``provisioningState: Updating``) and
returns ``Azure-AsyncOperation`` and ``Retry-After: 0``. Each poll of the operation answers
``InProgress`` ``lro_polls`` times, then the terminal status (decided at that moment):

* normally ``Succeeded``, and the NSG and its rules become ``provisioningState: Succeeded``;
* for an NSG whose lower-case id is in :attr:`FakeAzure.lro_fail`: ``Failed`` with an
  ``InternalServerError`` error, and the NSG is **rolled back**: the rules, tags and properties it
  had before the PUT come back under a new etag, with ``provisioningState: Failed`` (what ARM
  shows after a failed write). A failed create keeps the NSG with no custom rules. The rollback
  is skipped if somebody else wrote the NSG after that PUT;
* for an NSG in :attr:`FakeAzure.lro_hang`: ``InProgress`` forever.

Note that azure-core treats ``Retry-After: 0`` like no header and then sleeps the client's
``polling_interval`` (30 s by default) between polls, so clients should pass
``polling_interval=0``.

Injected faults (:meth:`FakeAzure.add_fault`) are applied before authentication and routing.
"""

from __future__ import annotations

import base64
import bisect
import copy
import gc
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from tests.fakes.tls import LoopbackTlsServer, Reply, TlsFake, json_reply

JSON = dict[str, Any]

#: The only bearer token the fake accepts, and the one its token endpoint hands out.
TOKEN: Final = "fake-token"

SUBSCRIPTION_TYPE: Final = "microsoft.resources/subscriptions"
RESOURCE_GROUP_TYPE: Final = "microsoft.resources/subscriptions/resourcegroups"
NSG_TYPE: Final = "microsoft.network/networksecuritygroups"
#: Types of the Resource Graph ``ResourceContainers`` table; everything else is ``Resources``.
CONTAINER_TYPES: Final = frozenset(
    {SUBSCRIPTION_TYPE, RESOURCE_GROUP_TYPE, "microsoft.management/managementgroups"}
)
#: Per-subscription network lists that answer (empty) even when the estate has none.
NETWORK_LIST_TYPES: Final = frozenset(
    f"microsoft.network/{name}"
    for name in (
        "virtualnetworks",
        "networkinterfaces",
        "networksecuritygroups",
        "applicationsecuritygroups",
        "privateendpoints",
        "publicipaddresses",
    )
)

ARG_DEFAULT_TOP: Final = 100
ARG_MAX_TOP: Final = 1000
MAX_SECURITY_RULES: Final = 1000
MAX_ASGS_PER_RULE_SIDE: Final = 10
MAX_ASGS_PER_NSG: Final = 100
MIN_PRIORITY: Final = 100
MAX_PRIORITY: Final = 4096
MAX_DESCRIPTION: Final = 140
MAX_PORT: Final = 65535
NETWORK_API_VERSION: Final = "2024-05-01"

_ARG_ONLY_FIELDS: Final = ("resourceGroup", "subscriptionId", "tenantId")
#: Top-level fields of a generic resource in ``GET /subscriptions/{s}/resources`` (no properties).
_GENERIC_FIELDS: Final = (
    "id", "name", "type", "kind", "location", "tags", "sku", "identity", "managedBy", "plan",
    "zones", "extendedLocation",
)  # fmt: skip
_PROTOCOLS: Final = {p.lower(): p for p in ("Tcp", "Udp", "Icmp", "Esp", "Ah", "*")}
_DIRECTIONS: Final = {d.lower(): d for d in ("Inbound", "Outbound")}
_ACCESSES: Final = {a.lower(): a for a in ("Allow", "Deny")}
_SIDES: Final = ("source", "destination")
_RULE_NAME: Final = re.compile(r"^\w(?:[\w.-]{0,78}\w)?$")
_PORT_RANGE: Final = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
_DEFAULT_RULES: Final = (
    ("AllowVnetInBound", "Inbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork",
     "Allow inbound traffic from all VMs in VNET"),
    ("AllowAzureLoadBalancerInBound", "Inbound", "Allow", 65001, "AzureLoadBalancer", "*",
     "Allow inbound traffic from azure load balancer"),
    ("DenyAllInBound", "Inbound", "Deny", 65500, "*", "*", "Deny all inbound traffic"),
    ("AllowVnetOutBound", "Outbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork",
     "Allow outbound traffic from all VMs to all VMs in VNET"),
    ("AllowInternetOutBound", "Outbound", "Allow", 65001, "*", "Internet",
     "Allow outbound traffic from all VMs to Internet"),
    ("DenyAllOutBound", "Outbound", "Deny", 65500, "*", "*", "Deny all outbound traffic"),
)  # fmt: skip

_I = re.IGNORECASE
_ROUTE_RESOURCE_ID: Final = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/[^/]+/[^/]+/[^/]+$", _I
)
_ROUTE_ARG: Final = re.compile(r"^/providers/microsoft\.resourcegraph/resources$", _I)
_ROUTE_SUBSCRIPTIONS: Final = re.compile(r"^/subscriptions$", _I)
_ROUTE_SUBSCRIPTION: Final = re.compile(r"^/subscriptions/([^/]+)$", _I)
_ROUTE_GROUPS: Final = re.compile(r"^/subscriptions/([^/]+)/resourcegroups$", _I)
_ROUTE_RESOURCES: Final = re.compile(r"^/subscriptions/([^/]+)/resources$", _I)
_ROUTE_OPERATION: Final = re.compile(
    r"^/subscriptions/([^/]+)/providers/microsoft\.network/locations/([^/]+)/operations/([^/]+)$",
    _I,
)
_ROUTE_SUB_LIST: Final = re.compile(r"^/subscriptions/([^/]+)/providers/([^/]+)/([^/]+)$", _I)
_ROUTE_GROUP_LIST: Final = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/([^/]+)/([^/]+)$", _I
)
_ROUTE_NSG: Final = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.network/"
    r"networksecuritygroups/([^/]+)$",
    _I,
)
_QUERY_TABLE: Final = re.compile(r"^\s*([A-Za-z_]\w*)")
_QUERY_TYPES: Final = re.compile(
    r"(?<![\w.])type\s*(?:in~|in|=~|==)\s*(\([^)]*\)|'[^']*'|\"[^\"]*\")", _I
)
_QUOTED: Final = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_FILTER_TYPE: Final = re.compile(r"resourceType\s+eq\s+'([^']+)'", _I)
_FILTER_CLAUSE_SPLIT: Final = re.compile(r"\s+or\s+", _I)


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request the fake received (recorded when its response was ready)."""

    method: str
    path: str  #: percent-decoded, without the query string
    query: dict[str, str]  #: first value of each query parameter
    headers: dict[str, str]  #: lower-case names
    body: Any  #: parsed JSON, or None when empty or not JSON
    status: int  #: the status code the fake answered


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class _ApiError(Exception):
    """An ARM error response: ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: list[JSON] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = details

    def response(self) -> _Response:
        error: JSON = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return _Response(self.status, {"error": error}, self.headers)


@dataclass(slots=True)
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int
    skip: int
    headers: dict[str, str]
    body: JSON | None


@dataclass(slots=True)
class _Operation:
    key: str  #: lower-case NSG id
    etag: str  #: the etag the PUT gave the NSG
    previous: JSON | None  #: the stored row before the PUT (None: the PUT created the NSG)
    polls: int = 0
    status: str = "InProgress"
    started: str = ""


class FakeAzure(TlsFake):
    """The fake, seeded with raw Resource Graph rows; use it as a context manager.

    Parameters:
        rows: ARG-shaped resources (``id, name, type, tenantId, location, resourceGroup,
            subscriptionId, tags, properties`` and ``etag`` for NSGs).
        arm_page_size: items per page of the ARM list endpoints (``nextLink`` paging).
        arg_quota: Resource Graph queries allowed per window (each page is a query).
        arg_quota_window_s: length of the fixed quota window, in seconds.
        lro_polls: ``InProgress`` answers before an NSG operation reaches its terminal status.
        management_groups: management group name -> subscription ids, for ARG
            ``managementGroups`` scopes.

    Public state (read it freely; mutate only the sets, between requests):
        requests: every request received, as :class:`Recorded`.
        lro_fail: lower-case NSG ids whose operations end ``Failed`` (and roll back).
        lro_hang: lower-case NSG ids whose operations stay ``InProgress``.
        put_bodies: ``(NSG id, request body)`` of every accepted NSG PUT.
    """

    def __init__(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        arm_page_size: int = 100,
        arg_quota: int = 15,
        arg_quota_window_s: float = 5.0,
        lro_polls: int = 1,
        management_groups: Mapping[str, list[str]] | None = None,
    ) -> None:
        if arm_page_size < 1 or arg_quota < 1 or arg_quota_window_s <= 0 or lro_polls < 0:
            raise ValueError("page size and quota must be >= 1, window > 0, lro_polls >= 0")
        self._arm_page_size = arm_page_size
        self._arg_quota = arg_quota
        self._arg_window = arg_quota_window_s
        self._lro_polls = lro_polls
        self._management_groups = {
            name.lower(): [sub.lower() for sub in subs]
            for name, subs in (management_groups or {}).items()
        }
        self._lock = threading.RLock()
        self.requests: list[Recorded] = []
        self.lro_fail: set[str] = set()
        self.lro_hang: set[str] = set()
        self.put_bodies: list[tuple[str, JSON]] = []
        self._faults: list[_Fault] = []
        self._before_put: dict[str, list[Callable[[], None]]] = {}
        self._operations: dict[str, _Operation] = {}
        self._quota_used = 0
        self._quota_window_end = 0.0
        self._rows: dict[str, JSON] = {}
        self._by_type: dict[str, list[str]] = {}
        self._by_sub_type: dict[tuple[str, str], list[str]] = {}
        self._subscriptions: set[str] = set()
        self._groups: dict[str, dict[str, str]] = {}  # sub -> lower rg -> rg as spelled
        self._canonical_types: dict[str, str] = {}
        self._id_lists: dict[tuple[Any, ...], list[str]] = {}
        self._load(rows)
        self._tls = LoopbackTlsServer(self._wire, name="fake-azure", timeout=60)

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``: the ``base_url`` for the SDK clients."""
        if not self._tls.url:
            raise RuntimeError("FakeAzure is not started")
        return self._tls.url

    @property
    def ca_path(self) -> str:
        """PEM file of the CA to trust (``connection_verify=`` or ``REQUESTS_CA_BUNDLE``)."""
        if not self._tls.ca_path:
            raise RuntimeError("FakeAzure is not started")
        return self._tls.ca_path

    # ----------------------------------------------------------------- test helpers

    def count(self, method: str | None = None, path_contains: str = "") -> int:
        """Requests so far with this method (any if None) whose path contains the text
        (case-insensitive)."""
        needle = path_contains.lower()
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method.upper()) and needle in r.path.lower()
            )

    def add_fault(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        skip: int = 0,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        """Answer ``status`` to the next ``times`` requests whose method matches (``*`` = any)
        and whose path matches ``path_regex`` (``re.search``, case-insensitive), after letting
        ``skip`` matching requests through.

        The default body is ``{"error": {"code": <status phrase>, "message": ...}}``; a 429
        without a ``Retry-After`` in ``headers`` gets ``Retry-After: 0``.
        """
        if times < 1 or skip < 0:
            raise ValueError("times must be >= 1 and skip >= 0")
        fault_headers = dict(headers or {})
        if status == HTTPStatus.TOO_MANY_REQUESTS and not any(
            name.lower() == "retry-after" for name in fault_headers
        ):
            fault_headers["Retry-After"] = "0"
        with self._lock:
            self._faults.append(
                _Fault(
                    method.upper(),
                    re.compile(path_regex, re.IGNORECASE),
                    status,
                    times,
                    skip,
                    fault_headers,
                    copy.deepcopy(dict(body)) if body is not None else None,
                )
            )

    def nsg(self, nsg_id: str) -> JSON:
        """A deep copy of the stored NSG row (ARG shape plus ``etag``); KeyError if absent."""
        with self._lock:
            row = self._rows.get(nsg_id.lower())
            if row is None or str(row.get("type", "")).lower() != NSG_TYPE:
                raise KeyError(nsg_id)
            return copy.deepcopy(row)

    def set_nsg(self, nsg_id: str, body: Mapping[str, Any]) -> str:
        """Somebody else's write (the portal): store ``body``'s rules at once, return the new etag.

        ``body`` is an NSG in ARM or ARG shape; only ``properties.securityRules``, ``tags`` (when
        present) and, for an NSG that does not exist yet, ``location`` are read. No validation,
        no long-running operation.
        """
        match = _ROUTE_NSG.match(nsg_id)
        if match is None:
            raise ValueError(f"not an NSG id: {nsg_id!r}")
        props = body.get("properties") or {}
        rules = props.get("securityRules") or []
        with self._lock:
            key = nsg_id.lower()
            current = self._rows.get(key)
            etag = _new_etag()
            if current is None:
                location = body.get("location")
                if not isinstance(location, str) or not location:
                    raise ValueError("a new NSG needs a location")
                sub, group, name = match.groups()
                row = self._new_nsg_row(sub, group, name, location, etag)
            else:
                row = copy.deepcopy(current)
            nsg_id = str(row["id"])
            row["etag"] = etag
            if "tags" in body:
                row["tags"] = copy.deepcopy(body["tags"]) or {}
            row["properties"]["provisioningState"] = "Succeeded"
            row["properties"]["securityRules"] = [
                _normalise_rule(nsg_id, etag, rule, "Succeeded") for rule in rules
            ]
            _retag_defaults(row, etag)
            self._store(key, row)
            return etag

    def put_resource(self, row: Mapping[str, Any]) -> None:
        """Create or replace any resource (ARG shape), as a change made in the portal would."""
        with self._lock:
            stored = copy.deepcopy(dict(row))
            if str(stored["type"]).lower() == NSG_TYPE:
                stored.setdefault("etag", _new_etag())
            self._store(str(stored["id"]).lower(), stored)

    def delete_resource(self, resource_id: str) -> None:
        """Remove a resource (and its entries in the indexes)."""
        with self._lock:
            lowered = resource_id.lower()
            row = self._rows.pop(lowered, None)
            if row is None:
                raise KeyError(resource_id)
            kind = str(row["type"]).lower()
            sub = str(row.get("subscriptionId") or "").lower()
            for ids in (self._by_type.get(kind, []), self._by_sub_type.get((sub, kind), [])):
                if lowered in ids:
                    ids.remove(lowered)
            self._id_lists.clear()

    def before_put(self, nsg_id: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` once, just before the next PUT of that NSG is checked and stored (after
        authentication and routing, before the If-Match check): a concurrent writer."""
        with self._lock:
            self._before_put.setdefault(nsg_id.lower(), []).append(fn)

    # ----------------------------------------------------------------- loading and indexes

    def _load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        # Creating ~250k dicts next to a big estate triggers many full collections: pause them.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            prepared: list[tuple[str, JSON]] = []
            for raw in rows:
                kind = str(raw["type"]).lower()
                row = copy.deepcopy(dict(raw)) if kind == NSG_TYPE else dict(raw)
                prepared.append((str(raw["id"]).lower(), row))
            prepared.sort(key=lambda item: item[0])
            for key, row in prepared:
                if key in self._rows:  # a duplicate id: the last one wins, indexed once
                    self._rows[key] = row
                else:
                    self._index(key, row)
        finally:
            if was_enabled:
                gc.enable()

    def _index(self, key: str, row: JSON) -> None:
        """Add a new row to the indexes (sorted insert; ``_load`` appends in order)."""
        self._rows[key] = row
        kind = str(row["type"]).lower()
        sub = str(row.get("subscriptionId") or "").lower()
        for ids in (
            self._by_type.setdefault(kind, []),
            self._by_sub_type.setdefault((sub, kind), []),
        ):
            if not ids or ids[-1] < key:
                ids.append(key)
            else:
                bisect.insort(ids, key)
        if sub:
            self._subscriptions.add(sub)
        group = row.get("resourceGroup")
        if sub and isinstance(group, str) and group:
            self._groups.setdefault(sub, {}).setdefault(group.lower(), group)
        if kind not in self._canonical_types:
            self._canonical_types[kind] = _canonical_type(str(row["id"]), kind)
        self._id_lists.clear()

    def _store(self, key: str, row: JSON) -> None:
        """Store a (new) row under the lock: replace, or insert and index."""
        if key in self._rows:
            self._rows[key] = row
        else:
            self._index(key, row)

    def _cached_ids(self, key: tuple[Any, ...], build: Callable[[], list[str]]) -> list[str]:
        ids = self._id_lists.get(key)
        if ids is None:
            ids = build()
            if len(self._id_lists) >= 64:
                self._id_lists.pop(next(iter(self._id_lists)))
            self._id_lists[key] = ids
        return ids

    # ----------------------------------------------------------------- dispatch

    def _wire(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        response = self._dispatch(method, target, headers, raw)  # serialised outside the lock
        return json_reply(response.status, response.body, response.headers)

    def _dispatch(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Response:
        split = urlsplit(target)
        path = unquote(split.path).rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        try:
            if bad_json:
                raise _ApiError(400, "InvalidRequestFormat", "The request body is not valid JSON.")
            response = self._respond(method.upper(), path, query, headers, body)
        except _ApiError as error:
            response = error.response()
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        with self._lock:
            self.requests.append(
                Recorded(method.upper(), path, query, headers, body, response.status)
            )
        return response

    def _respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> _Response:
        fault = self._take_fault(method, path)
        if fault is not None:
            return fault
        if path.lower() == "/msi/token":
            return self._token(method, query, headers)
        authorization = headers.get("authorization")
        if authorization is None:
            raise _ApiError(401, "AuthenticationFailed", "The 'Authorization' header is missing.")
        if authorization != f"Bearer {TOKEN}":
            raise _ApiError(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid (fake wants " f"'Bearer {TOKEN}').",
            )
        return self._route(method, path, query, headers, body)

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> _Response:
        def nsg(m: re.Match[str]) -> _Response:
            if method == "GET":
                return self._get_nsg(m[1], m[2], m[3])
            return self._put_nsg(m[1], m[2], m[3], headers, body)

        routes: tuple[tuple[re.Pattern[str], str, Callable[[re.Match[str]], _Response]], ...] = (
            (_ROUTE_ARG, "POST", lambda _: self._resource_graph(body)),
            (_ROUTE_SUBSCRIPTIONS, "GET", lambda _: self._list_subscriptions(path, query)),
            (_ROUTE_SUBSCRIPTION, "GET", lambda m: self._get_subscription(m[1])),
            (_ROUTE_GROUPS, "GET", lambda m: self._list_groups(path, query, m[1])),
            (_ROUTE_RESOURCES, "GET", lambda m: self._list_generic(path, query, m[1])),
            (_ROUTE_OPERATION, "GET", lambda m: self._poll(m[3])),
            (
                _ROUTE_SUB_LIST,
                "GET",
                lambda m: self._list_typed(path, query, m[1], None, f"{m[2]}/{m[3]}"),
            ),
            (
                _ROUTE_GROUP_LIST,
                "GET",
                lambda m: self._list_typed(path, query, m[1], m[2], f"{m[3]}/{m[4]}"),
            ),
            (_ROUTE_NSG, "GET PUT", nsg),
        )
        for pattern, allowed, handler in routes:
            if match := pattern.match(path):
                if method not in allowed.split():
                    raise _ApiError(
                        405, "MethodNotAllowed", f"{method} is not supported on {path} by the fake."
                    )
                return handler(match)
        if method == "GET" and _ROUTE_RESOURCE_ID.match(path):
            return self._get_by_id(path)
        raise _ApiError(404, "NotFound", f"The fake does not serve {method} {path}.")

    def _get_by_id(self, path: str) -> _Response:
        """GET of any stored resource by its id (what ``resources.get_by_id`` sends)."""
        with self._lock:
            row = self._rows.get(path.rstrip("/").lower())
            if row is None:
                raise _ApiError(404, "ResourceNotFound", f"The resource '{path}' was not found.")
            return _Response(200, self._arm_shape(copy.deepcopy(row)))

    def _take_fault(self, method: str, path: str) -> _Response | None:
        with self._lock:
            for fault in self._faults:
                if fault.method not in ("*", method) or not fault.path.search(path):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                body = fault.body
                if body is None:
                    body = {
                        "error": {
                            "code": _status_code(fault.status),
                            "message": f"Injected fault: HTTP {fault.status} for {method} {path}.",
                        }
                    }
                return _Response(fault.status, copy.deepcopy(body), dict(fault.headers))
        return None

    # ----------------------------------------------------------------- managed identity

    def _token(self, method: str, query: dict[str, str], headers: dict[str, str]) -> _Response:
        """App Service managed identity protocol (api-version 2019-08-01)."""
        if method != "GET":
            return _Response(405, {"statusCode": 405, "message": "Use GET."})
        if not headers.get("x-identity-header"):
            return _Response(
                401, {"statusCode": 401, "message": "The X-IDENTITY-HEADER header is missing."}
            )
        resource = query.get("resource")
        if not resource:
            return _Response(400, {"statusCode": 400, "message": "The resource is missing."})
        return _Response(
            200,
            {
                "access_token": TOKEN,
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
            },
        )

    # ----------------------------------------------------------------- Resource Graph

    def _resource_graph(self, body: Any) -> _Response:
        quota_headers = self._charge_quota()
        try:
            response = self._resource_graph_page(body)
        except _ApiError as error:
            error.headers.update(quota_headers)
            raise
        response.headers.update(quota_headers)
        return response

    def _charge_quota(self) -> dict[str, str]:
        """Count one query in the fixed window; 429 when the window's quota is used up."""
        with self._lock:
            now = time.monotonic()
            if now >= self._quota_window_end:
                self._quota_window_end = now + self._arg_window
                self._quota_used = 0
            left = self._quota_window_end - now
            if self._quota_used >= self._arg_quota:
                retry_after = math.ceil(left) if left > 0.05 else 0
                raise _ApiError(
                    429,
                    "RateLimiting",
                    "Client application has been throttled and should not attempt to repeat the "
                    "request until an amount of time has elapsed.",
                    headers={
                        "Retry-After": str(retry_after),
                        "x-ms-user-quota-remaining": "0",
                        "x-ms-user-quota-resets-after": _hhmmss(left),
                    },
                )
            self._quota_used += 1
            return {
                "x-ms-user-quota-remaining": str(self._arg_quota - self._quota_used),
                "x-ms-user-quota-resets-after": _hhmmss(left),
            }

    def _resource_graph_page(self, body: Any) -> _Response:
        if not isinstance(body, dict):
            raise _ApiError(400, "BadRequest", "The request body must be a JSON object.")
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise _ApiError(400, "BadRequest", "The query is missing.")
        table, types = _parse_query(query)
        subscriptions = _string_list(body.get("subscriptions"), "subscriptions")
        groups = _string_list(body.get("managementGroups"), "managementGroups")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise _ApiError(400, "BadRequest", "options must be a JSON object.")
        top = _int_option(options, "$top", ARG_DEFAULT_TOP)
        if not 1 <= top <= ARG_MAX_TOP:
            raise _ApiError(400, "BadRequest", f"$top must be between 1 and {ARG_MAX_TOP}.")
        skip = _int_option(options, "$skip", 0)
        result_format = str(options.get("resultFormat") or "objectArray")
        if result_format.lower() != "objectarray":
            raise _ApiError(400, "BadRequest", "The fake serves only resultFormat objectArray.")
        if subscriptions and groups:
            raise _ApiError(400, "BadRequest", "Give subscriptions or managementGroups, not both.")
        scope: frozenset[str] | None = None
        if subscriptions:
            scope = frozenset(s.lower() for s in subscriptions)
        elif groups:
            members: set[str] = set()
            for group in groups:
                found = self._management_groups.get(group.lower())
                if found is None:
                    raise _ApiError(400, "BadRequest", f"Management group '{group}' was not found.")
                members.update(found)
            scope = frozenset(members)
        digest = _digest(query, sorted(s.lower() for s in subscriptions), sorted(groups))
        token = options.get("$skipToken")
        offset = _decode_token(str(token), digest, arg=True) if token else max(skip, 0)
        with self._lock:
            ids = self._cached_ids(
                ("arg", table, types, scope), lambda: self._arg_ids(table, types, scope)
            )
            rows = [self._rows[key] for key in ids[offset : offset + top]]
        data = [{k: v for k, v in row.items() if k != "etag"} for row in rows]
        result: JSON = {
            "totalRecords": len(ids),
            "count": len(data),
            "resultTruncated": "false",
        }
        if offset + top < len(ids):
            result["$skipToken"] = _encode_token(offset + top, digest)
        result["facets"] = []
        result["data"] = data
        return _Response(200, result)

    def _arg_ids(
        self, table: str, types: frozenset[str] | None, scope: frozenset[str] | None
    ) -> list[str]:
        containers = table == "resourcecontainers"
        wanted = [
            kind
            for kind in self._by_type
            if (kind in CONTAINER_TYPES) == containers and (types is None or kind in types)
        ]
        if scope is None:
            lists = [self._by_type[kind] for kind in wanted]
        else:
            lists = [self._by_sub_type.get((sub, kind), []) for sub in scope for kind in wanted]
        lists = [ids for ids in lists if ids]
        if len(lists) == 1:
            return list(lists[0])
        return sorted(key for ids in lists for key in ids)

    # ----------------------------------------------------------------- ARM lists

    def _page(
        self,
        path: str,
        query: dict[str, str],
        list_key: tuple[Any, ...],
        ids: list[str],
        shape: Callable[[JSON], JSON],
        keep: tuple[str, ...] = (),
    ) -> _Response:
        """One page of an ARM list, with an absolute ``nextLink`` when more items remain."""
        digest = _digest(*map(str, list_key))
        token = query.get("$skiptoken")
        offset = _decode_token(token, digest, arg=False) if token else 0
        size = self._arm_page_size
        with self._lock:
            rows = [self._rows[key] for key in ids[offset : offset + size]]
        result: JSON = {"value": [shape(row) for row in rows]}
        if offset + size < len(ids):
            params = [("api-version", query.get("api-version", NETWORK_API_VERSION))]
            params += [(name, query[name]) for name in keep if name in query]
            params.append(("$skiptoken", _encode_token(offset + size, digest)))
            result["nextLink"] = f"{self.url}{quote(path)}?{urlencode(params, quote_via=quote)}"
        return _Response(200, result)

    def _list_subscriptions(self, path: str, query: dict[str, str]) -> _Response:
        with self._lock:
            ids = list(self._by_type.get(SUBSCRIPTION_TYPE, []))
        return self._page(path, query, ("subscriptions",), ids, _subscription_shape)

    def _get_subscription(self, sub: str) -> _Response:
        with self._lock:
            row = self._rows.get(f"/subscriptions/{sub.lower()}")
        if row is None or str(row["type"]).lower() != SUBSCRIPTION_TYPE:
            raise _subscription_not_found(sub)
        return _Response(200, _subscription_shape(row))

    def _list_groups(self, path: str, query: dict[str, str], sub: str) -> _Response:
        self._require_subscription(sub)
        key = (sub.lower(), RESOURCE_GROUP_TYPE)
        with self._lock:
            ids = list(self._by_sub_type.get(key, []))
        return self._page(path, query, ("groups", *key), ids, self._arm_shape)

    def _list_generic(self, path: str, query: dict[str, str], sub: str) -> _Response:
        self._require_subscription(sub)
        raw_filter = query.get("$filter")
        types: frozenset[str] | None = None
        if raw_filter:
            clauses = [c.strip() for c in _FILTER_CLAUSE_SPLIT.split(raw_filter.strip())]
            matches = [_FILTER_TYPE.fullmatch(clause) for clause in clauses]
            if not all(matches):
                raise _ApiError(
                    400,
                    "InvalidFilterInQueryString",
                    "The fake understands only $filter=resourceType eq '<type>' [or ...], "
                    f"not {raw_filter!r}.",
                )
            types = frozenset(m[1].lower() for m in matches if m is not None)
        sub_key = sub.lower()

        def build() -> list[str]:
            lists = [
                ids
                for (owner, kind), ids in self._by_sub_type.items()
                if owner == sub_key
                and kind not in CONTAINER_TYPES
                and (types is None or kind in types)
            ]
            return sorted(key for ids in lists for key in ids)

        with self._lock:
            ids = self._cached_ids(("generic", sub_key, types), build)
        return self._page(
            path, query, ("generic", sub_key, types), ids, self._generic_shape, ("$filter",)
        )

    def _list_typed(
        self, path: str, query: dict[str, str], sub: str, group: str | None, type_path: str
    ) -> _Response:
        self._require_subscription(sub)
        kind = type_path.lower()
        sub_key = sub.lower()
        with self._lock:
            known = kind in NETWORK_LIST_TYPES or kind in self._by_type
        if not known or kind in CONTAINER_TYPES:
            raise _ApiError(
                404, "InvalidResourceType", f"The fake does not know resource type '{type_path}'."
            )
        if group is not None:
            self._require_group(sub, group)
        group_key = None if group is None else group.lower()

        def build() -> list[str]:
            ids = self._by_sub_type.get((sub_key, kind), [])
            if group_key is None:
                return list(ids)
            return [
                key
                for key in ids
                if str(self._rows[key].get("resourceGroup", "")).lower() == group_key
            ]

        list_key = ("typed", sub_key, kind, group_key)
        with self._lock:
            ids = self._cached_ids(list_key, build)
        return self._page(path, query, list_key, ids, self._arm_shape)

    def _require_subscription(self, sub: str) -> None:
        with self._lock:
            if sub.lower() not in self._subscriptions:
                raise _subscription_not_found(sub)

    def _require_group(self, sub: str, group: str) -> str:
        """The resource group as spelled in the estate; 404 ResourceGroupNotFound if unknown."""
        self._require_subscription(sub)
        with self._lock:
            spelled = self._groups.get(sub.lower(), {}).get(group.lower())
        if spelled is None:
            raise _ApiError(
                404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found."
            )
        return spelled

    def _arm_shape(self, row: JSON) -> JSON:
        """ARM REST shape: without the ARG-only fields, with the canonical ``type`` casing."""
        shaped = {k: v for k, v in row.items() if k not in _ARG_ONLY_FIELDS}
        shaped["type"] = self._canonical(row)
        return shaped

    def _generic_shape(self, row: JSON) -> JSON:
        shaped = {k: row[k] for k in _GENERIC_FIELDS if k in row}
        shaped["type"] = self._canonical(row)
        return shaped

    def _canonical(self, row: JSON) -> str:
        kind = str(row["type"]).lower()
        return self._canonical_types.get(kind) or _canonical_type(str(row["id"]), kind)

    # ----------------------------------------------------------------- NSG

    def _get_nsg(self, sub: str, group: str, name: str) -> _Response:
        self._require_group(sub, group)
        key = _nsg_key(sub, group, name)
        with self._lock:
            row = self._rows.get(key)
        if row is None or str(row["type"]).lower() != NSG_TYPE:
            raise _ApiError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Network/networkSecurityGroups/{name}' under resource "
                f"group '{group}' was not found.",
            )
        return _Response(200, self._arm_shape(row))

    def _put_nsg(
        self, sub: str, group: str, name: str, headers: dict[str, str], body: Any
    ) -> _Response:
        spelled_group = self._require_group(sub, group)
        key = _nsg_key(sub, group, name)
        with self._lock:
            hooks = self._before_put.get(key)
            hook = hooks.pop(0) if hooks else None
            if hooks == []:
                del self._before_put[key]
        if hook is not None:
            hook()
        with self._lock:
            current = self._rows.get(key)
            if_match = headers.get("if-match")
            if if_match is not None and (
                current is None or if_match not in ("*", current.get("etag"))
            ):
                raise _ApiError(
                    412,
                    "PreconditionFailed",
                    f"The If-Match etag {if_match!r} does not match the current etag "
                    f"{None if current is None else current.get('etag')!r} of NSG '{name}'.",
                )
            _validate_nsg(body, None if current is None else str(current.get("location", "")))
            etag = _new_etag()
            if current is None:
                stored_sub = self._subscription_spelling(sub)
                row = self._new_nsg_row(stored_sub, spelled_group, name, body["location"], etag)
            else:
                row = copy.deepcopy(current)
            nsg_id = str(row["id"])
            props = row["properties"]
            new_props = body.get("properties") or {}
            props["provisioningState"] = "Updating"
            props["securityRules"] = [
                _normalise_rule(nsg_id, etag, rule, "Updating")
                for rule in new_props.get("securityRules") or []
            ]
            if "flushConnection" in new_props:
                props["flushConnection"] = bool(new_props["flushConnection"])
            row["etag"] = etag
            row["tags"] = copy.deepcopy(body.get("tags") or {})
            _retag_defaults(row, etag)
            self._store(key, row)
            operation_id = str(uuid.uuid4())
            self._operations[operation_id] = _Operation(key, etag, current, started=_utc_now())
            self.put_bodies.append((nsg_id, copy.deepcopy(body)))
            location = str(row["location"]).replace(" ", "").lower()
            stored_sub = str(row.get("subscriptionId") or sub)
        operation_url = (
            f"{self.url}/subscriptions/{stored_sub}/providers/Microsoft.Network/locations/"
            f"{location}/operations/{operation_id}?api-version={NETWORK_API_VERSION}"
        )
        return _Response(
            201 if current is None else 200,
            self._arm_shape(row),
            {"Azure-AsyncOperation": operation_url, "Retry-After": "0"},
        )

    def _poll(self, operation_id: str) -> _Response:
        with self._lock:
            operation = self._operations.get(operation_id)
            if operation is None:
                raise _ApiError(
                    404, "OperationNotFound", f"Operation '{operation_id}' was not found."
                )
            body: JSON = {"name": operation_id, "startTime": operation.started}
            if operation.status == "InProgress":
                if _member(operation.key, self.lro_hang) or operation.polls < self._lro_polls:
                    operation.polls += 1
                else:
                    self._finish(operation)
            body["status"] = operation.status
            if operation.status == "Failed":
                body["error"] = {
                    "code": "InternalServerError",
                    "message": "An error occurred (injected by FakeAzure.lro_fail).",
                }
            if operation.status != "InProgress":
                body["endTime"] = _utc_now()
        return _Response(200, body, {"Retry-After": "0"})

    def _finish(self, operation: _Operation) -> None:
        """Reach the terminal status (under the lock), updating the NSG if nobody wrote since."""
        failed = _member(operation.key, self.lro_fail)
        operation.status = "Failed" if failed else "Succeeded"
        current = self._rows.get(operation.key)
        if current is None or current.get("etag") != operation.etag:
            return
        if not failed:
            row = copy.deepcopy(current)
            _set_provisioning(row, "Succeeded")
            self._rows[operation.key] = row
            return
        if operation.previous is not None:
            row = copy.deepcopy(operation.previous)
        else:
            row = copy.deepcopy(current)
            row["properties"]["securityRules"] = []
        etag = _new_etag()
        row["etag"] = etag
        for rule in row["properties"].get("securityRules", []):
            rule["etag"] = etag
        _retag_defaults(row, etag)
        _set_provisioning(row, "Succeeded")
        row["properties"]["provisioningState"] = "Failed"
        self._rows[operation.key] = row

    def _subscription_spelling(self, sub: str) -> str:
        row = self._rows.get(f"/subscriptions/{sub.lower()}")
        return str(row.get("subscriptionId") or sub) if row is not None else sub

    def _new_nsg_row(self, sub: str, group: str, name: str, location: str, etag: str) -> JSON:
        """A fresh NSG row (ARG shape) with ARM's six default rules and no custom rules."""
        subscription = self._rows.get(f"/subscriptions/{sub.lower()}") or {}
        nsg_id = (
            f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/"
            f"networkSecurityGroups/{name}"
        )
        defaults = [
            {
                "id": f"{nsg_id}/defaultSecurityRules/{rule_name}",
                "name": rule_name,
                "etag": etag,
                "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
                "properties": {
                    "provisioningState": "Succeeded",
                    "description": description,
                    "protocol": "*",
                    "sourcePortRange": "*",
                    "destinationPortRange": "*",
                    "sourceAddressPrefix": source,
                    "destinationAddressPrefix": destination,
                    "access": access,
                    "priority": priority,
                    "direction": direction,
                    "sourcePortRanges": [],
                    "destinationPortRanges": [],
                    "sourceAddressPrefixes": [],
                    "destinationAddressPrefixes": [],
                },
            }
            for rule_name, direction, access, priority, source, destination, description in (
                _DEFAULT_RULES
            )
        ]
        return {
            "id": nsg_id,
            "name": name,
            "type": NSG_TYPE,
            "tenantId": subscription.get("tenantId", ""),
            "location": location,
            "resourceGroup": group,
            "subscriptionId": sub,
            "etag": etag,
            "tags": {},
            "properties": {
                "provisioningState": "Updating",
                "resourceGuid": str(uuid.uuid4()),
                "securityRules": [],
                "defaultSecurityRules": defaults,
            },
        }


# --------------------------------------------------------------------------- helpers


def _subscription_not_found(sub: str) -> _ApiError:
    return _ApiError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")


def _subscription_shape(row: JSON) -> JSON:
    props = row.get("properties") or {}
    sub = str(row.get("subscriptionId") or str(row["id"]).rsplit("/", 1)[-1])
    shaped: JSON = {
        "id": f"/subscriptions/{sub}",
        "subscriptionId": sub,
        "displayName": row.get("name", ""),
        "state": props.get("state", "Enabled"),
        "tenantId": row.get("tenantId", ""),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "tags": row.get("tags") or {},
    }
    if "subscriptionPolicies" in props:
        shaped["subscriptionPolicies"] = props["subscriptionPolicies"]
    return shaped


def _canonical_type(resource_id: str, kind: str) -> str:
    """ARM casing of a type, read from the id (``.../providers/Microsoft.Network/x/n`` ->
    ``Microsoft.Network/x``); the lower-case type when the id does not say."""
    lowered = resource_id.lower()
    at = lowered.rfind("/providers/")
    if at >= 0:
        parts = resource_id[at + len("/providers/") :].split("/")
        canonical = "/".join([parts[0], *parts[1::2]])
        if canonical.lower() == kind:
            return canonical
    if kind == SUBSCRIPTION_TYPE:
        return "Microsoft.Resources/subscriptions"
    if kind == RESOURCE_GROUP_TYPE:
        return "Microsoft.Resources/resourceGroups"
    return kind


def _nsg_key(sub: str, group: str, name: str) -> str:
    return (
        f"/subscriptions/{sub}/resourcegroups/{group}/providers/microsoft.network/"
        f"networksecuritygroups/{name}"
    ).lower()


def _member(key: str, ids: set[str]) -> bool:
    return any(candidate.lower() == key for candidate in ids)


def _new_etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _hhmmss(seconds: float) -> str:
    whole = max(0, math.ceil(seconds))
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _status_code(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return f"Http{status}"
    return "".join(word[:1].upper() + word[1:] for word in re.split(r"[\s-]+", phrase))


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _encode_token(offset: int, digest: str) -> str:
    raw = json.dumps({"o": offset, "h": digest}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, digest: str, *, arg: bool) -> int:
    """The offset in a skip token; 400 when it is malformed or was issued for another query."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = decoded["o"]
        valid = decoded["h"] == digest and isinstance(offset, int) and offset >= 0
    except (ValueError, TypeError, KeyError):
        valid = False
        offset = 0
    if not valid:
        message = f"The skip token {token!r} is not valid for this request."
        if arg:
            raise _ApiError(
                400,
                "BadRequest",
                message,
                details=[{"code": "InvalidSkipToken", "message": message}],
            )
        raise _ApiError(400, "InvalidSkipToken", message)
    return int(offset)


def _parse_query(query: str) -> tuple[str, frozenset[str] | None]:
    """The table and the first ``type in~ (...)`` / ``type =~ '...'`` list of a query."""
    match = _QUERY_TABLE.match(query)
    table = match[1].lower() if match else ""
    if table not in ("resources", "resourcecontainers"):
        raise _ApiError(
            400,
            "BadRequest",
            f"The fake understands queries on Resources or ResourceContainers, not {query[:40]!r}.",
        )
    types_match = _QUERY_TYPES.search(query)
    if types_match is None:
        return table, None
    return table, frozenset(
        (single or double).lower() for single, double in _QUOTED.findall(types_match[1])
    )


def _string_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _ApiError(400, "BadRequest", f"{name} must be a list of strings.")
    return list(value)


def _int_option(options: JSON, name: str, default: int) -> int:
    value = options.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _ApiError(400, "BadRequest", f"{name} must be an integer.")
    return int(value)


def _set_provisioning(row: JSON, state: str) -> None:
    props = row["properties"]
    props["provisioningState"] = state
    for rule in props.get("securityRules", []):
        rule["properties"]["provisioningState"] = state


def _retag_defaults(row: JSON, etag: str) -> None:
    for rule in row["properties"].get("defaultSecurityRules", []):
        rule["etag"] = etag


def _normalise_rule(nsg_id: str, etag: str, rule: Mapping[str, Any], state: str) -> JSON:
    """A rule as ARM stores and returns it: id/etag/type filled, enums in canonical casing,
    plural arrays always present, empty singulars and empty ASG lists dropped."""
    name = str(rule["name"])
    source = dict(rule.get("properties") or {})
    source.pop("provisioningState", None)
    props: JSON = {"provisioningState": state}
    for key, value in source.items():
        props[key] = copy.deepcopy(value)
    for key, canon in (("protocol", _PROTOCOLS), ("direction", _DIRECTIONS), ("access", _ACCESSES)):
        if isinstance(props.get(key), str):
            props[key] = canon.get(props[key].lower(), props[key])
    for side in _SIDES:
        for singular, plural in (
            (f"{side}PortRange", f"{side}PortRanges"),
            (f"{side}AddressPrefix", f"{side}AddressPrefixes"),
        ):
            if props.get(singular) in ("", None):
                props.pop(singular, None)
            if props.get(plural) is None:
                props[plural] = []
        if not props.get(f"{side}ApplicationSecurityGroups"):
            props.pop(f"{side}ApplicationSecurityGroups", None)
    return {
        "id": f"{nsg_id}/securityRules/{name}",
        "name": name,
        "etag": etag,
        "type": "Microsoft.Network/networkSecurityGroups/securityRules",
        "properties": props,
    }


# --------------------------------------------------------------------------- NSG validation


def _bad_rule(code: str, message: str) -> _ApiError:
    return _ApiError(400, code, message)


def _validate_nsg(body: Any, current_location: str | None) -> None:
    """ARM-like validation of an NSG PUT body; raises a 400 :class:`_ApiError`."""
    if not isinstance(body, dict):
        raise _bad_rule("InvalidRequestFormat", "The NSG body must be a JSON object.")
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise _bad_rule("LocationRequired", "The location property is required for this NSG.")
    if current_location and _norm_location(location) != _norm_location(current_location):
        raise _bad_rule(
            "InvalidResourceLocation",
            f"The NSG already exists in location '{current_location}'; it cannot be moved to "
            f"'{location}'.",
        )
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise _bad_rule("InvalidRequestFormat", "properties must be a JSON object.")
    rules = props.get("securityRules") or []
    if not isinstance(rules, list):
        raise _bad_rule("InvalidRequestFormat", "properties.securityRules must be an array.")
    if len(rules) > MAX_SECURITY_RULES:
        raise _bad_rule(
            "SecurityRuleInvalidCount",
            f"{len(rules)} security rules exceed the limit of {MAX_SECURITY_RULES} per NSG.",
        )
    names: set[str] = set()
    slots: dict[tuple[str, int], str] = {}
    asgs: set[str] = set()
    for index, rule in enumerate(rules):
        name, direction, priority = _validate_rule(index, rule, asgs)
        if name.lower() in names:
            raise _bad_rule(
                "InvalidRequestFormat", f"Security rule name '{name}' is used more than once."
            )
        names.add(name.lower())
        other = slots.get((direction, priority))
        if other is not None:
            raise _bad_rule(
                "SecurityRuleConflict",
                f"Security rule '{name}' conflicts with rule '{other}': rules cannot have the "
                f"same priority ({priority}) and direction ({direction}).",
            )
        slots[(direction, priority)] = name
    if len(asgs) > MAX_ASGS_PER_NSG:
        raise _bad_rule(
            "SecurityRuleInvalidAsgCount",
            f"The NSG references {len(asgs)} application security groups; the limit is "
            f"{MAX_ASGS_PER_NSG}.",
        )


def _validate_rule(index: int, rule: Any, asgs: set[str]) -> tuple[str, str, int]:
    """Check one rule; return (name, canonical direction, priority)."""
    if not isinstance(rule, dict):
        raise _bad_rule("InvalidRequestFormat", f"securityRules[{index}] must be a JSON object.")
    name = rule.get("name")
    if not isinstance(name, str) or not name:
        raise _bad_rule("InvalidRequestFormat", f"securityRules[{index}] has no name.")
    if not _RULE_NAME.match(name):
        raise _bad_rule(
            "InvalidResourceName",
            f"Security rule name '{name}' is invalid: up to 80 word characters, '.' or '-', "
            "starting with a word character and ending with a word character or '_'.",
        )
    props = rule.get("properties")
    if not isinstance(props, dict):
        raise _bad_rule("InvalidRequestFormat", f"Security rule '{name}' has no properties.")
    where = f"Security rule '{name}'"
    priority = props.get("priority")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise _bad_rule("SecurityRuleInvalidPriority", f"{where} has no integer priority.")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise _bad_rule(
            "SecurityRuleInvalidPriority",
            f"{where} has priority {priority}; it must be between {MIN_PRIORITY} and "
            f"{MAX_PRIORITY}.",
        )
    direction = _enum(props.get("direction"), _DIRECTIONS, "SecurityRuleInvalidDirection", where)
    _enum(props.get("access"), _ACCESSES, "SecurityRuleInvalidAccess", where)
    _enum(props.get("protocol"), _PROTOCOLS, "SecurityRuleInvalidProtocol", where)
    description = props.get("description")
    if isinstance(description, str) and len(description) > MAX_DESCRIPTION:
        raise _bad_rule(
            "SecurityRuleInvalidDescription",
            f"{where} has a description longer than {MAX_DESCRIPTION} characters.",
        )
    for side in _SIDES:
        _validate_side(where, side, props, asgs)
    return name, direction, priority


def _enum(value: Any, allowed: Mapping[str, str], code: str, where: str) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise _bad_rule(
            code, f"{where} has {value!r}; expected one of {', '.join(allowed.values())}."
        )
    return allowed[value.lower()]


def _validate_side(where: str, side: str, props: JSON, asgs: set[str]) -> None:
    prefix = props.get(f"{side}AddressPrefix")
    prefixes = props.get(f"{side}AddressPrefixes")
    groups = props.get(f"{side}ApplicationSecurityGroups")
    port = props.get(f"{side}PortRange")
    ports = props.get(f"{side}PortRanges")
    for singular_name, singular, plural in (
        (f"{side}AddressPrefix", prefix, prefixes),
        (f"{side}PortRange", port, ports),
    ):
        if singular and plural:
            raise _bad_rule(
                "SecurityRuleInvalidParameters",
                f"{where} sets both {singular_name} and its plural form; use one of them.",
            )
    if groups and (prefix or prefixes):
        raise _bad_rule(
            "SecurityRuleInvalidParameters",
            f"{where} mixes {side} application security groups with {side} address prefixes.",
        )
    if not (prefix or prefixes or groups):
        raise _bad_rule(
            "SecurityRuleInvalidAddressPrefix",
            f"{where} has no {side} address prefix or application security group.",
        )
    if groups:
        if not isinstance(groups, list) or not all(
            isinstance(g, dict) and isinstance(g.get("id"), str) and g["id"] for g in groups
        ):
            raise _bad_rule(
                "InvalidRequestFormat",
                f"{where}: {side}ApplicationSecurityGroups must be a list of {{'id': ...}}.",
            )
        if len(groups) > MAX_ASGS_PER_RULE_SIDE:
            raise _bad_rule(
                "SecurityRuleInvalidAsgCount",
                f"{where} has {len(groups)} {side} application security groups; the limit is "
                f"{MAX_ASGS_PER_RULE_SIDE}.",
            )
        asgs.update(str(g["id"]).lower() for g in groups)
    values = [port] if port else list(ports or [])
    if not values:
        raise _bad_rule("SecurityRuleInvalidPortRange", f"{where} has no {side} port range.")
    for value in values:
        if not _valid_port_range(value):
            raise _bad_rule(
                "SecurityRuleInvalidPortRange",
                f"{where} has invalid {side} port range {value!r}: use '*', a port, or "
                f"'low-high' within 0-{MAX_PORT}.",
            )


def _valid_port_range(value: Any) -> bool:
    if value == "*":
        return True
    match = _PORT_RANGE.match(str(value)) if isinstance(value, str | int) else None
    if match is None:
        return False
    low = int(match[1])
    high = int(match[2]) if match[2] else low
    return 0 <= low <= high <= MAX_PORT


def _norm_location(location: str) -> str:
    return location.replace(" ", "").lower()
