"""How zts reaches Azure Resource Manager: endpoint, TLS trust, retries, credential.

One place builds the keyword arguments every management client gets, so discovery and
enforcement behave alike: azure-core's retry policy honours ``Retry-After`` on 429/5xx, and
long-running operations are polled at the interval ARM asks for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential

PUBLIC_ARM = "https://management.azure.com"
DEFAULT_POLLING_INTERVAL = 5.0  # seconds between LRO polls when ARM gives no Retry-After


@dataclass(frozen=True, slots=True)
class ArmSettings:
    """``arm_url``: Resource Manager (another cloud, or a test fake); ``ca_bundle``: extra CA file
    to trust (a TLS-inspecting proxy, tests); ``retry_total``: attempts azure-core makes on
    throttling and transient errors; ``polling_interval``: LRO poll fallback when ARM sends no
    ``Retry-After`` (seconds)."""

    arm_url: str = PUBLIC_ARM
    ca_bundle: str | None = None
    retry_total: int = 6
    retry_backoff_factor: float = 0.8
    polling_interval: float = DEFAULT_POLLING_INTERVAL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ArmSettings:
        """``ZTS_ARM_ENDPOINT``, ``ZTS_CA_BUNDLE`` and ``ZTS_LRO_POLL_SECONDS`` (all optional).
        azure-core treats ``Retry-After: 0`` as absent and then waits the polling interval."""
        env = os.environ if env is None else env
        poll = env.get("ZTS_LRO_POLL_SECONDS")
        try:
            interval = float(poll) if poll else DEFAULT_POLLING_INTERVAL
        except ValueError:
            raise ValueError(f"ZTS_LRO_POLL_SECONDS must be a number of seconds, got {poll!r}")\
                from None
        return cls(arm_url=(env.get("ZTS_ARM_ENDPOINT") or PUBLIC_ARM).rstrip("/"),
                   ca_bundle=env.get("ZTS_CA_BUNDLE") or None, polling_interval=interval)

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "base_url": self.arm_url,
            "credential_scopes": [f"{self.arm_url}/.default"],
            "retry_total": self.retry_total,
            "retry_backoff_factor": self.retry_backoff_factor,
            "polling_interval": self.polling_interval,
        }
        if self.ca_bundle:
            kwargs["connection_verify"] = self.ca_bundle
        return kwargs


def default_credential() -> TokenCredential:
    """Managed identity in Azure; developer sign-ins (Azure CLI, environment) locally. Never a
    secret in settings. Interactive browser sign-in stays off: zts runs unattended."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def rest_json(model: Any) -> dict[str, Any]:
    """The REST JSON behind an SDK model (these SDK versions' models are mappings over it)."""
    as_dict = getattr(model, "as_dict", None)
    value = as_dict() if callable(as_dict) else model
    return dict(value)
