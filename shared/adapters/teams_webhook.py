"""Post alert cards to a Teams channel through a Workflows webhook ("Post to a channel when a
webhook request is received"), with azure-core's pipeline.

The webhook URL embeds a SAS signature (``sig=...``): whoever has it can post to the channel. So:

* it only comes from a setting (``ZTS_TEAMS_WEBHOOK_URL``, a Key Vault reference in Azure), must
  be ``https``, and is never put in an exception, a result, a log line or a ``repr``;
* the pipeline has no logging policy, and a filter on the ``urllib3``/``azure.core`` loggers
  redacts it from their debug lines (urllib3 logs every request line with its query string);
* errors are described by status and exception type only, with any echo of the URL removed.

Retries: :class:`AlertRetryPolicy` (also used for email) retries 408/429/5xx and connection errors
on POST too, honours ``Retry-After`` up to ``max_retry_after`` seconds (a longer wait gives up
for this run instead of blocking it: the alert stays retryable), and backs off exponentially.
A retried POST whose first response was lost can post twice; an alert seen twice is preferred to
an alert lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from azure.core import PipelineClient
from azure.core.exceptions import AzureError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import HeadersPolicy, RetryPolicy, UserAgentPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest

from shared.alerts.escaping import one_line
from shared.alerts.ports import DeliveryFailed

__all__ = ["AlertRetryPolicy", "SecretRedactor", "TeamsWebhookChannel"]

REDACTED: Final = "<redacted webhook>"
_LOGGERS: Final = ("urllib3.connectionpool", "azure.core.pipeline.transport._requests_basic",
                   "azure.core.pipeline.policies._universal",
                   "azure.core.pipeline.policies.http_logging_policy")


class AlertRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's retry policy, extended to POST (alerts are POSTs) and bounded: a
    ``Retry-After`` longer than ``max_retry_after`` seconds is not waited for."""

    def __init__(self, *, max_retry_after: float = 60.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_retry_after = max_retry_after

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        settings: dict[str, Any] = super().configure_retries(options)
        settings["methods"] = frozenset(settings["methods"]) | {"POST"}
        return settings

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        wait = self.get_retry_after(response)
        if wait is not None and wait > self.max_retry_after:
            return False
        return bool(super().is_retry(settings, response))


class SecretRedactor(logging.Filter):
    """Replace secret strings in log records (message and arguments) with a marker."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def _secrets_of(url: str) -> list[str]:
    parts = urlsplit(url)
    values = [url, parts.query, f"{parts.path}?{parts.query}"]
    for key, found in parse_qs(parts.query).items():
        if key.lower() in {"sig", "signature", "code", "sv", "sp"}:
            values.extend(found)
    return values


class TeamsWebhookChannel:
    """A :class:`shared.alerts.ports.TeamsChannel` for one Workflows webhook URL."""

    def __init__(self, url: str, *, ca_bundle: str | None = None, retry_total: int = 3,
                 retry_backoff_factor: float = 0.5, max_retry_after: float = 60.0,
                 timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError("the Teams webhook URL must be an https URL (value not shown: it "
                             "is a secret)")
        self._url = url
        self._redactor = SecretRedactor(_secrets_of(url))
        for name in _LOGGERS:
            logging.getLogger(name).addFilter(self._redactor)
        retry = AlertRetryPolicy(retry_total=retry_total,
                                 retry_backoff_factor=retry_backoff_factor,
                                 retry_backoff_max=8, max_retry_after=max_retry_after,
                                 timeout=max(timeout * (retry_total + 1), 60))
        transport = RequestsTransport(connection_verify=ca_bundle or True,
                                      connection_timeout=timeout, read_timeout=timeout)
        self._client: PipelineClient[HttpRequest, Any] = PipelineClient(
            base_url=f"{parts.scheme}://{parts.netloc}", transport=transport,
            policies=[HeadersPolicy(), UserAgentPolicy(sdk_moniker="zts-alerts"), retry])

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TeamsWebhookChannel | None:
        """``ZTS_TEAMS_WEBHOOK_URL`` (None when unset) and ``ZTS_CA_BUNDLE``."""
        url = env.get("ZTS_TEAMS_WEBHOOK_URL")
        if not url:
            return None
        return cls(url.strip(), ca_bundle=env.get("ZTS_CA_BUNDLE") or None)

    def __repr__(self) -> str:
        return f"TeamsWebhookChannel({REDACTED})"

    def close(self) -> None:
        self._client.close()
        for name in _LOGGERS:
            logging.getLogger(name).removeFilter(self._redactor)

    def post(self, message: Mapping[str, Any]) -> None:
        request = HttpRequest("POST", self._url, json=dict(message),
                              headers={"Accept": "application/json"})
        try:
            response = self._client.send_request(request)
        except AzureError as error:
            raise DeliveryFailed("teams", f"the webhook could not be reached "
                                 f"({type(error).__name__}, after retries)") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = ""
        with contextlib.suppress(Exception):
            detail = one_line(self._redactor.scrub(response.text()), 200)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        raise DeliveryFailed("teams", f"the webhook answered HTTP {status} {phrase}".rstrip()
                             + (f": {detail}" if detail else ""), status=status)
