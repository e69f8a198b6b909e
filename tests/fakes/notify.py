"""An HTTPS fake of the two alert channels, good enough for the real clients:

* **Azure Communication Services Email** (REST 2023-03-31, also 2025-09-01, the SDK default):
  ``POST /emails:send`` checks authentication (``Bearer fake-token`` from a token credential, or an
  ``HMAC-SHA256`` signature made with :attr:`FakeNotify.access_key`, verified like the service
  does), checks the body against the documented ``EmailMessage`` shape (required and unknown keys,
  types, a non-empty ``to``, 10 MB), and answers **202** with ``Operation-Location`` and
  ``{"id", "status": "Running"}``. ``GET /emails/operations/{id}`` answers ``Running``
  :attr:`email_polls` times, then ``Succeeded`` (``Failed`` when a recipient is in
  :attr:`fail_recipients`). A caller-chosen ``Operation-Id`` must be a UUID.
* **Teams Workflows webhook** (``POST /workflows/{id}/triggers/manual/paths/invoke`` with
  ``api-version``, ``sp``, ``sv`` and the ``sig`` signature in the query): wrong or missing ``sig``
  is 401; the body must be the ``{"type": "message", "attachments": [{contentType
  application/vnd.microsoft.card.adaptive, content: AdaptiveCard}]}`` envelope; over 28 KB is 413;
  accepted posts get **202** with no body.
* The App Service managed identity endpoint ``GET /msi/token`` (so ``DefaultAzureCredential``
  works with ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``/``REQUESTS_CA_BUNDLE``).

Served on ``https://127.0.0.1:<free port>`` with a throw-away ``trustme`` CA (the SDKs refuse
bearer tokens over plain http), with the threading server of ``tests/fakes/tls.py``.
Every request is recorded; accepted emails and cards are kept in :attr:`emails` and :attr:`cards`.
Faults (:meth:`add_fault`) answer a status (``Retry-After`` as given) or drop the connection
without answering, before authentication and routing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.tls import LoopbackTlsServer, Reply, TlsFake, json_reply

JSON = dict[str, Any]

TOKEN: Final = "fake-token"
ACCESS_KEY: Final = base64.b64encode(b"zts-fake-acs-access-key-0123456789").decode()
WEBHOOK_SECRET: Final = "Zs3cr3tSigNeverLogged0123456789abcdef"
WORKFLOW_ID: Final = "0f8fad5bd9cb469fa16570867728950e"
EMAIL_API_VERSIONS: Final = frozenset({"2023-03-31", "2025-09-01"})
MAX_EMAIL_BYTES: Final = 10 * 1024 * 1024
MAX_CARD_BYTES: Final = 28 * 1024
CARD_CONTENT_TYPE: Final = "application/vnd.microsoft.card.adaptive"

_MESSAGE_KEYS: Final = frozenset({"headers", "senderAddress", "content", "recipients",
                                  "attachments", "replyTo", "userEngagementTrackingDisabled"})
_CONTENT_KEYS: Final = frozenset({"subject", "plainText", "html"})
_RECIPIENT_KEYS: Final = frozenset({"to", "cc", "bcc"})
_ADDRESS_KEYS: Final = frozenset({"address", "displayName"})
_ROUTE_WEBHOOK: Final = re.compile(r"^/workflows/([^/]+)/triggers/manual/paths/invoke$")
_ROUTE_OPERATION: Final = re.compile(r"^/emails/operations/([^/]+)$")


@dataclass(frozen=True, slots=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass(slots=True)
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str]
    body: JSON | None
    drop: bool


@dataclass(slots=True)
class _Operation:
    id: str
    recipients: list[str]
    polls: int = 0


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> _Response:
        return _Response(self.status, {"error": {"code": self.code, "message": self.message}},
                         {"x-ms-error-code": self.code})


class FakeNotify(TlsFake):
    """The fake; use it as a context manager. Public state may be read at any time.

    Parameters:
        email_polls: ``Running`` answers of an email operation before its terminal status.
        retry_after: the ``retry-after`` header of 202/Running answers (seconds; ``0`` means the
            client's own polling interval applies).
    """

    def __init__(self, *, email_polls: int = 1, retry_after: int = 0) -> None:
        self.email_polls = email_polls
        self.retry_after = retry_after
        self.access_key = ACCESS_KEY
        self.webhook_secret = WEBHOOK_SECRET
        self.requests: list[Recorded] = []
        self.emails: list[JSON] = []  # accepted message bodies, with "_operationId"
        self.cards: list[JSON] = []  # accepted webhook payloads
        self.fail_recipients: set[str] = set()
        self.problems: list[str] = []  # why requests were refused (shape, auth)
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._operations: dict[str, _Operation] = {}
        self._tls = LoopbackTlsServer(self._wire, name="fake-notify", methods=("GET", "POST"),
                                      timeout=30)

    # -- lifecycle ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget requests, messages, faults and failure settings (between tests)."""
        with self._lock:
            self.requests.clear()
            self.emails.clear()
            self.cards.clear()
            self.problems.clear()
            self.fail_recipients.clear()
            self._faults.clear()
            self._operations.clear()

    @property
    def acs_connection_string(self) -> str:
        return f"endpoint={self.url}/;accesskey={self.access_key}"

    @property
    def webhook_url(self) -> str:
        return (f"{self.url}/workflows/{WORKFLOW_ID}/triggers/manual/paths/invoke"
                f"?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={self.webhook_secret}")

    # -- test helpers ------------------------------------------------------------------------

    def add_fault(self, method: str, path_regex: str, status: int = 0, *, times: int = 1,
                  headers: Mapping[str, str] | None = None, body: Mapping[str, Any] | None = None,
                  drop: bool = False) -> None:
        """Answer ``status`` (or, with ``drop``, close the connection unanswered) to the next
        ``times`` requests whose method (``*``: any) and path (``re.search``) match."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, times,
                                       dict(headers or {}), dict(body) if body else None, drop))

    def count(self, method: str, path_contains: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests
                       if r.method == method and path_contains in r.path)

    # -- dispatch ----------------------------------------------------------------------------

    def _wire(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply | None:
        response = self.dispatch(method, target, headers, raw)
        return None if response.drop else json_reply(response.status, response.body,
                                                      response.headers)

    def dispatch(self, method: str, target: str, headers: dict[str, str],
                 raw: bytes) -> _Response:
        split = urlsplit(target)
        path = unquote(split.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        try:
            response = self._take_fault(method, path) or self._route(
                method, target, path, query, headers, raw, body)
        except _Refused as refused:
            with self._lock:
                self.problems.append(f"{method} {path}: {refused.status} {refused.message}")
            response = refused.response()
        with self._lock:
            self.requests.append(Recorded(method, path, query, headers, body, response.status))
        return response

    def _take_fault(self, method: str, path: str) -> _Response | None:
        with self._lock:
            for fault in self._faults:
                if fault.method not in ("*", method) or not fault.path.search(path):
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                if fault.drop:
                    return _Response(0, drop=True)
                body = fault.body or {"error": {"code": _code(fault.status),
                                                "message": f"Injected HTTP {fault.status}."}}
                return _Response(fault.status, body, dict(fault.headers))
        return None

    def _route(self, method: str, target: str, path: str, query: dict[str, str],
               headers: dict[str, str], raw: bytes, body: Any) -> _Response:
        if path == "/msi/token":
            return self._token(method, query, headers)
        if path == "/emails:send":
            self._require(method, "POST")
            self._authenticate(method, target, headers, raw)
            return self._send_email(query, headers, raw, body)
        if match := _ROUTE_OPERATION.match(path):
            self._require(method, "GET")
            self._authenticate(method, target, headers, raw)
            return self._poll(match[1], query)
        if _ROUTE_WEBHOOK.match(path):
            self._require(method, "POST")
            return self._webhook(query, headers, raw, body)
        raise _Refused(404, "NotFound", f"the fake does not serve {method} {path}")

    @staticmethod
    def _require(method: str, allowed: str) -> None:
        if method != allowed:
            raise _Refused(405, "MethodNotAllowed", f"{method} is not allowed here")

    # -- ACS Email ---------------------------------------------------------------------------

    def _authenticate(self, method: str, target: str, headers: dict[str, str],
                      raw: bytes) -> None:
        authorization = headers.get("authorization", "")
        if authorization == f"Bearer {TOKEN}":
            return
        if authorization.startswith("HMAC-SHA256 "):
            self._check_hmac(method, target, headers, raw, authorization)
            return
        raise _Refused(401, "Denied", "missing or invalid Authorization header")

    def _check_hmac(self, method: str, target: str, headers: dict[str, str], raw: bytes,
                    authorization: str) -> None:
        fields = dict(part.split("=", 1) for part in
                      authorization.removeprefix("HMAC-SHA256 ").split("&") if "=" in part)
        if fields.get("SignedHeaders") != "x-ms-date;host;x-ms-content-sha256":
            raise _Refused(401, "Denied", "HMAC: unexpected SignedHeaders")
        content_hash = base64.b64encode(hashlib.sha256(raw).digest()).decode()
        if headers.get("x-ms-content-sha256") != content_hash:
            raise _Refused(401, "Denied", "HMAC: x-ms-content-sha256 does not match the body")
        to_sign = (f"{method}\n{target}\n{headers.get('x-ms-date', '')};"
                   f"{headers.get('host', '')};{content_hash}")
        expected = base64.b64encode(hmac.new(base64.b64decode(self.access_key),
                                             to_sign.encode(), hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            raise _Refused(401, "Denied", "HMAC: signature does not match")

    def _send_email(self, query: dict[str, str], headers: dict[str, str], raw: bytes,
                    body: Any) -> _Response:
        version = query.get("api-version", "")
        if version not in EMAIL_API_VERSIONS:
            raise _Refused(400, "InvalidApiVersion", f"api-version {version!r} is not supported")
        if len(raw) > MAX_EMAIL_BYTES:
            raise _Refused(413, "RequestTooLarge", "the request is larger than 10 MB")
        problems = email_shape_problems(body)
        if problems:
            raise _Refused(400, "BadRequest", "; ".join(problems))
        operation_id = headers.get("operation-id") or str(uuid.uuid4())
        try:
            uuid.UUID(operation_id)
        except ValueError:
            raise _Refused(400, "InvalidOperationId", "Operation-Id must be a UUID") from None
        recipients = [r["address"] for part in ("to", "cc", "bcc")
                      for r in body["recipients"].get(part, [])]
        with self._lock:
            self._operations[operation_id] = _Operation(operation_id, recipients)
            self.emails.append({**body, "_operationId": operation_id})
        location = f"{self.url}/emails/operations/{operation_id}?api-version={version}"
        return _Response(202, {"id": operation_id, "status": "Running"},
                         {"Operation-Location": location, "retry-after": str(self.retry_after)})

    def _poll(self, operation_id: str, query: dict[str, str]) -> _Response:
        if query.get("api-version") not in EMAIL_API_VERSIONS:
            raise _Refused(400, "InvalidApiVersion", "api-version is missing or not supported")
        with self._lock:
            operation = self._operations.get(operation_id)
            if operation is None:
                raise _Refused(404, "NotFound", f"no operation {operation_id}")
            operation.polls += 1
            if operation.polls <= self.email_polls:
                return _Response(200, {"id": operation_id, "status": "Running"},
                                 {"retry-after": str(self.retry_after)})
            if self.fail_recipients.intersection(operation.recipients):
                return _Response(200, {"id": operation_id, "status": "Failed", "error": {
                    "code": "InvalidRecipient", "message": "A recipient was rejected."}})
            return _Response(200, {"id": operation_id, "status": "Succeeded"})

    # -- Teams webhook -----------------------------------------------------------------------

    def _webhook(self, query: dict[str, str], headers: dict[str, str], raw: bytes,
                 body: Any) -> _Response:
        if not hmac.compare_digest(query.get("sig", ""), self.webhook_secret):
            raise _Refused(401, "DirectApiAuthorizationRequired",
                           "the request must be authenticated with the sig parameter")
        if query.get("api-version") is None or query.get("sv") is None:
            raise _Refused(400, "InvalidRequest", "api-version and sv are required")
        if not headers.get("content-type", "").startswith("application/json"):
            raise _Refused(415, "UnsupportedMediaType", "the body must be application/json")
        if len(raw) > MAX_CARD_BYTES:
            raise _Refused(413, "RequestEntityTooLarge", "the message is larger than 28 KB")
        problems = card_envelope_problems(body)
        if problems:
            raise _Refused(400, "InvalidTemplate", "; ".join(problems))
        with self._lock:
            self.cards.append(body)
        return _Response(202)

    # -- managed identity --------------------------------------------------------------------

    @staticmethod
    def _token(method: str, query: dict[str, str], headers: dict[str, str]) -> _Response:
        if method != "GET" or not headers.get("x-identity-header") or not query.get("resource"):
            return _Response(400, {"statusCode": 400, "message": "bad token request"})
        return _Response(200, {"access_token": TOKEN, "expires_on": str(int(time.time()) + 3600),
                               "resource": query["resource"], "token_type": "Bearer"})


def email_shape_problems(body: Any) -> list[str]:
    """What in ``body`` breaks the documented ``EmailMessage`` (2023-03-31) shape."""
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    problems = [f"unknown property {k!r}" for k in sorted(set(body) - _MESSAGE_KEYS)]
    if not isinstance(body.get("senderAddress"), str) or "@" not in body["senderAddress"]:
        problems.append("senderAddress is required (an email address)")
    problems += _content_problems(body.get("content"))
    problems += _recipient_problems(body.get("recipients"))
    if "userEngagementTrackingDisabled" in body and not isinstance(
            body["userEngagementTrackingDisabled"], bool):
        problems.append("userEngagementTrackingDisabled must be a boolean")
    if "headers" in body and not (isinstance(body["headers"], dict) and all(
            isinstance(v, str) for v in body["headers"].values())):
        problems.append("headers must map names to strings")
    return problems


def _content_problems(content: Any) -> list[str]:
    if not isinstance(content, dict):
        return ["content is required"]
    problems = [f"unknown content property {k!r}" for k in sorted(set(content) - _CONTENT_KEYS)]
    if not isinstance(content.get("subject"), str) or not content["subject"]:
        problems.append("content.subject is required")
    problems += [f"content.{k} must be a string" for k in ("plainText", "html")
                 if k in content and not isinstance(content[k], str)]
    if not content.get("plainText") and not content.get("html"):
        problems.append("content needs plainText or html")
    return problems


def _recipient_problems(recipients: Any) -> list[str]:
    if not isinstance(recipients, dict):
        return ["recipients is required"]
    problems = [f"unknown recipients property {k!r}"
                for k in sorted(set(recipients) - _RECIPIENT_KEYS)]
    if not isinstance(recipients.get("to"), list) or not recipients["to"]:
        problems.append("recipients.to needs at least one address")
    for part in ("to", "cc", "bcc"):
        for index, entry in enumerate(recipients.get(part) or []):
            if not isinstance(entry, dict) or set(entry) - _ADDRESS_KEYS \
                    or not isinstance(entry.get("address"), str) or "@" not in entry["address"]:
                problems.append(f"recipients.{part}[{index}] must be "
                                '{"address": ..., "displayName"?: ...}')
    return problems


def card_envelope_problems(body: Any) -> list[str]:
    """What in ``body`` breaks the message envelope the Workflows template posts to Teams."""
    if not isinstance(body, dict) or body.get("type") != "message":
        return ['the body must be {"type": "message", "attachments": [...]}']
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return ["attachments must be a non-empty array"]
    problems = []
    for index, attachment in enumerate(attachments):
        if not isinstance(attachment, dict):
            problems.append(f"attachments[{index}] must be an object")
            continue
        if attachment.get("contentType") != CARD_CONTENT_TYPE:
            problems.append(f"attachments[{index}].contentType must be {CARD_CONTENT_TYPE}")
        content = attachment.get("content")
        if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
            problems.append(f"attachments[{index}].content must be an AdaptiveCard")
        elif not isinstance(content.get("version"), str) or not isinstance(
                content.get("body"), list):
            problems.append(f"attachments[{index}].content needs version and body")
    return problems


def _code(status: int) -> str:
    try:
        return "".join(w[:1].upper() + w[1:] for w in HTTPStatus(status).phrase.split())
    except ValueError:
        return f"Http{status}"
