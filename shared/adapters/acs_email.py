"""Send alert emails with Azure Communication Services (``azure-communication-email``).

``EmailClient.begin_send`` posts ``/emails:send`` (API version 2023-03-31, the stable version the
REST reference documents) and polls the operation. A message counts as delivered to the channel
when the operation reports ``Succeeded``; if it is still running after ``poll_timeout`` seconds,
the 202 Accepted already means the service took it, and it is reported as sent. ``Failed`` or
``Canceled``, an HTTP error or an unreachable endpoint raise :class:`DeliveryFailed` (the alert
stays retryable).

Each send carries an ``Operation-Id`` derived from the alert's claim, so the SDK's own retries of
one send reuse it. Credentials: a ``TokenCredential`` (managed identity; the SDK asks for the
``https://communication.azure.com/.default`` scope) or a connection string (HMAC-signed requests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from azure.communication.email import EmailClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

from shared.adapters.teams_webhook import AlertRetryPolicy
from shared.alerts.escaping import one_line
from shared.alerts.ports import DeliveryFailed
from shared.alerts.render_email import EmailContent

__all__ = ["API_VERSION", "AcsEmailChannel"]

API_VERSION: Final = "2023-03-31"


def _client_kwargs(ca_bundle: str | None, polling_interval: float, retry_total: int,
                   retry_backoff_factor: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "api_version": API_VERSION, "polling_interval": polling_interval,
        "retry_policy": AlertRetryPolicy(retry_total=retry_total,
                                         retry_backoff_factor=retry_backoff_factor,
                                         retry_backoff_max=8, max_retry_after=60.0),
    }
    if ca_bundle:
        kwargs["connection_verify"] = ca_bundle
    return kwargs


class AcsEmailChannel:
    """A :class:`shared.alerts.ports.EmailChannel` sending from ``sender`` (an address of a
    verified ACS domain)."""

    def __init__(self, client: EmailClient, sender: str, *, poll_timeout: float = 120.0) -> None:
        if "@" not in sender:
            raise ValueError(f"the email sender {sender!r} is not an address")
        self._client = client
        self.sender = sender
        self.poll_timeout = poll_timeout

    @classmethod
    def from_connection_string(cls, connection_string: str, sender: str, *,
                               ca_bundle: str | None = None, polling_interval: float = 2.0,
                               retry_total: int = 3, retry_backoff_factor: float = 0.5,
                               poll_timeout: float = 120.0) -> AcsEmailChannel:
        client = EmailClient.from_connection_string(
            connection_string, **_client_kwargs(ca_bundle, polling_interval, retry_total,
                                                retry_backoff_factor))
        return cls(client, sender, poll_timeout=poll_timeout)

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: TokenCredential, sender: str, *,
                      ca_bundle: str | None = None, polling_interval: float = 2.0,
                      retry_total: int = 3, retry_backoff_factor: float = 0.5,
                      poll_timeout: float = 120.0) -> AcsEmailChannel:
        client = EmailClient(endpoint, credential, **_client_kwargs(
            ca_bundle, polling_interval, retry_total, retry_backoff_factor))
        return cls(client, sender, poll_timeout=poll_timeout)

    @classmethod
    def from_env(cls, env: Mapping[str, str],
                 credential: Callable[[], TokenCredential]) -> AcsEmailChannel | None:
        """``ZTS_EMAIL_SENDER`` with ``ZTS_ACS_ENDPOINT`` (managed identity via ``credential``)
        or ``ZTS_ACS_CONNECTION_STRING``; ``ZTS_CA_BUNDLE``; ``ZTS_LRO_POLL_SECONDS`` (seconds
        between polls of the send operation, default 2). None when no endpoint is set;
        ValueError when the sender is missing or a value is malformed."""
        endpoint = env.get("ZTS_ACS_ENDPOINT")
        connection = env.get("ZTS_ACS_CONNECTION_STRING")
        if not endpoint and not connection:
            return None
        sender = env.get("ZTS_EMAIL_SENDER") or ""
        if not sender:
            raise ValueError("ZTS_EMAIL_SENDER (the From address of a verified ACS domain) is "
                             "not set")
        ca = env.get("ZTS_CA_BUNDLE") or None
        poll = env.get("ZTS_LRO_POLL_SECONDS") or "2"
        try:
            interval = float(poll)
        except ValueError:
            raise ValueError(f"ZTS_LRO_POLL_SECONDS must be a number of seconds, got {poll!r}") \
                from None
        if endpoint:
            return cls.from_endpoint(endpoint, credential(), sender, ca_bundle=ca,
                                     polling_interval=interval)
        assert connection is not None
        return cls.from_connection_string(connection, sender, ca_bundle=ca,
                                          polling_interval=interval)

    def close(self) -> None:
        self._client.close()

    def message(self, recipients: tuple[str, ...], content: EmailContent) -> dict[str, Any]:
        """The REST ``EmailMessage`` body (keys exactly as the 2023-03-31 reference)."""
        return {
            "senderAddress": self.sender,
            "recipients": {"to": [{"address": r} for r in recipients]},
            "content": {"subject": content.subject, "plainText": content.plain_text,
                        "html": content.html},
            "userEngagementTrackingDisabled": True,
        }

    def send(self, recipients: tuple[str, ...], content: EmailContent, *,
             operation_id: str) -> str:
        if not recipients:
            raise DeliveryFailed("email", "no recipients")
        try:
            poller = self._client.begin_send(self.message(recipients, content),
                                             operation_id=operation_id)
            result = poller.result(timeout=self.poll_timeout)
            done = poller.done()
        except ClientAuthenticationError as error:
            raise DeliveryFailed("email", f"authentication failed (HTTP {error.status_code})",
                                 status=error.status_code) from None
        except HttpResponseError as error:
            code = getattr(getattr(error, "error", None), "code", None) or ""
            message = one_line(getattr(getattr(error, "error", None), "message", "") or "", 200)
            status = error.status_code
            operation = status is None or 200 <= status < 300  # the poll said Failed/Canceled
            what = "the send operation failed" if operation else f"HTTP {status}"
            raise DeliveryFailed("email", f"{what} {code}".rstrip()
                                 + (f": {message}" if message else ""), status=status) from None
        except AzureError as error:
            raise DeliveryFailed("email", f"the ACS endpoint could not be reached "
                                 f"({type(error).__name__}, after retries)") from None
        if not done:
            return operation_id  # accepted (202), still running: the service has it
        status = result.get("status") if isinstance(result, dict) else None
        if status != "Succeeded":
            ended = status or "without a status"
            raise DeliveryFailed("email", f"the send operation ended {ended}")
        return str(result.get("id") or operation_id)
