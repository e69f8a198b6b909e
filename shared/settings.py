"""App settings, read once and validated together: a missing or malformed setting is reported
with every other problem at once, naming the setting, instead of failing later in a trigger.

Identity, not secrets: storage is reached through endpoints and the managed identity
(``AZURE_CLIENT_ID`` names the user-assigned identity). ``ZTS_STORAGE_CONNECTION_STRING`` exists
for Azurite and local runs only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.alerts.recipients import parse_recipients
from shared.errors import ZtsError

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}

#: Every setting the app reads (local.settings.sample.json lists them all; a test checks it).
SETTING_NAMES = (
    "ZTS_STORAGE_TABLE_ENDPOINT", "ZTS_STORAGE_QUEUE_ENDPOINT", "ZTS_STORAGE_CONNECTION_STRING",
    "ZTS_TABLE_PREFIX", "ZTS_INVENTORY_TABLE", "ZTS_POLICY_PATH", "ZTS_SUBSCRIPTIONS",
    "ZTS_MANAGEMENT_GROUP", "ZTS_ENFORCEMENT_ENABLED", "AZURE_CLIENT_ID", "ZTS_ARM_ENDPOINT",
    "ZTS_LRO_POLL_SECONDS", "ZTS_DISCOVERY_SCHEDULE", "ZTS_ALERT_CONFIG",
    "ZTS_ANALYTICS_SCHEDULE", "ZTS_LA_WORKSPACE_ID", "ZTS_ANALYTICS_CONFIG",
    "ZTS_ADX_CLUSTER_URI", "ZTS_ADX_DATABASE", "ZTS_ADX_FLOW_TABLE", "ZTS_ADX_IP_TABLE",
    "ZTS_EMAIL_RECIPIENTS",
)


class SettingsError(ZtsError):
    """Settings are missing or malformed; ``problems`` lists each one."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid settings: " + "; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class Settings:
    table_endpoint: str = ""
    queue_endpoint: str = ""
    storage_connection_string: str = ""  # development (Azurite) only
    table_prefix: str = "zts"
    inventory_table: str = "Inventory"
    policy_path: Path | None = None
    alert_config_path: Path | None = None
    email_recipients: tuple[str, ...] = ()  # checked when the alert router is built
    analytics_config_path: Path | None = None
    la_workspace_id: str = ""
    la_endpoint: str = ""  # Log Analytics query endpoint (sovereign clouds, tests)
    # Azure Data Explorer: the analytics backend when the cluster is set (large estates)
    adx_cluster_uri: str = ""
    adx_database: str = ""
    adx_flow_table: str = "NTANetAnalytics"
    adx_ip_table: str = "NTAIpDetails"
    subscriptions: tuple[str, ...] = ()
    management_group: str = ""
    enforcement_enabled: bool = False
    own_client_id: str = ""  # AZURE_CLIENT_ID: zts's identity, to recognise its own writes
    arm_endpoint: str = ""
    ca_bundle: str = ""
    lro_poll_seconds: str = ""
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        problems: list[str] = []
        enforcement = env.get("ZTS_ENFORCEMENT_ENABLED", "").strip().lower()
        if enforcement not in _TRUE | _FALSE:
            problems.append(f"ZTS_ENFORCEMENT_ENABLED must be true or false, got {enforcement!r}")
        prefix = env.get("ZTS_TABLE_PREFIX", "zts").strip() or "zts"
        if not prefix.isalnum():
            problems.append(f"ZTS_TABLE_PREFIX must be letters and digits, got {prefix!r}")
        policy = env.get("ZTS_POLICY_PATH", "").strip()
        alerts = env.get("ZTS_ALERT_CONFIG", "").strip()
        analytics = env.get("ZTS_ANALYTICS_CONFIG", "").strip()
        subscriptions = tuple(s.strip() for s in env.get("ZTS_SUBSCRIPTIONS", "").split(",")
                              if s.strip())
        adx_cluster = env.get("ZTS_ADX_CLUSTER_URI", "").strip().rstrip("/")
        if adx_cluster and not adx_cluster.lower().startswith("https://"):
            problems.append(f"ZTS_ADX_CLUSTER_URI must be an https:// URL (the cluster's query "
                            f"URI), got {adx_cluster!r}")
        adx_tables = {name: env.get(name, "").strip() or default for name, default in (
            ("ZTS_ADX_FLOW_TABLE", "NTANetAnalytics"), ("ZTS_ADX_IP_TABLE", "NTAIpDetails"))}
        problems.extend(f"{name} must not contain control characters, got {value!r}"
                        for name, value in adx_tables.items()
                        if any(ord(c) < 32 or ord(c) == 127 for c in value))
        return cls(
            table_endpoint=env.get("ZTS_STORAGE_TABLE_ENDPOINT", "").strip(),
            queue_endpoint=env.get("ZTS_STORAGE_QUEUE_ENDPOINT", "").strip(),
            storage_connection_string=env.get("ZTS_STORAGE_CONNECTION_STRING", "").strip(),
            table_prefix=prefix,
            inventory_table=env.get("ZTS_INVENTORY_TABLE", "Inventory").strip() or "Inventory",
            policy_path=_app_relative(policy) if policy else None,
            alert_config_path=_app_relative(alerts) if alerts else None,
            email_recipients=parse_recipients(env.get("ZTS_EMAIL_RECIPIENTS", "")),
            analytics_config_path=_app_relative(analytics) if analytics else None,
            la_workspace_id=env.get("ZTS_LA_WORKSPACE_ID", "").strip(),
            la_endpoint=env.get("ZTS_LA_ENDPOINT", "").strip(),
            adx_cluster_uri=adx_cluster,
            adx_database=env.get("ZTS_ADX_DATABASE", "").strip(),
            adx_flow_table=adx_tables["ZTS_ADX_FLOW_TABLE"],
            adx_ip_table=adx_tables["ZTS_ADX_IP_TABLE"],
            subscriptions=subscriptions,
            management_group=env.get("ZTS_MANAGEMENT_GROUP", "").strip(),
            enforcement_enabled=enforcement in _TRUE,
            own_client_id=env.get("AZURE_CLIENT_ID", "").strip().lower(),
            arm_endpoint=env.get("ZTS_ARM_ENDPOINT", "").strip(),
            ca_bundle=env.get("ZTS_CA_BUNDLE", "").strip(),
            lro_poll_seconds=env.get("ZTS_LRO_POLL_SECONDS", "").strip(),
            problems=tuple(problems),
        )

    def require(self, *capabilities: str) -> Settings:
        """Raise :class:`SettingsError` listing everything the capabilities need and lack
        (``storage``, ``queue``, ``policy``)."""
        problems = list(self.problems)
        has_connection = bool(self.storage_connection_string)
        if "storage" in capabilities and not (self.table_endpoint or has_connection):
            problems.append("ZTS_STORAGE_TABLE_ENDPOINT is not set (the Table endpoint of zts's "
                            "storage account)")
        if "queue" in capabilities and not (self.queue_endpoint or has_connection):
            problems.append("ZTS_STORAGE_QUEUE_ENDPOINT is not set (the Queue endpoint of zts's "
                            "storage account)")
        if "policy" in capabilities:
            if self.policy_path is None:
                problems.append("ZTS_POLICY_PATH is not set (the policy file deployed with the "
                                "app)")
            elif not self.policy_path.is_file():
                problems.append(f"ZTS_POLICY_PATH {self.policy_path} is not a file")
        if "analytics" in capabilities:
            if self.adx_cluster_uri and not self.adx_database:
                problems.append("ZTS_ADX_DATABASE is not set (the Azure Data Explorer database "
                                "holding NTANetAnalytics/NTAIpDetails; ZTS_ADX_CLUSTER_URI is "
                                "set)")
            elif not self.adx_cluster_uri and not self.la_workspace_id:
                problems.append("ZTS_LA_WORKSPACE_ID is not set (the workspace id of the "
                                "Traffic Analytics Log Analytics workspace), nor "
                                "ZTS_ADX_CLUSTER_URI (an Azure Data Explorer cluster)")
        if problems:
            raise SettingsError(problems)
        return self

    @property
    def analytics_backend(self) -> str:
        """``adx`` when an Azure Data Explorer cluster is set (it wins over a workspace),
        else ``log_analytics``."""
        return "adx" if self.adx_cluster_uri else "log_analytics"

    def adx_tables(self) -> dict[str, str]:
        """The names the ADX database keeps the Traffic Analytics tables under."""
        return {"NTANetAnalytics": self.adx_flow_table, "NTAIpDetails": self.adx_ip_table}

    def arm_environment(self) -> dict[str, str]:
        """The ARM settings in the form :class:`ArmSettings.from_env` reads."""
        return {name: value for name, value in (
            ("ZTS_ARM_ENDPOINT", self.arm_endpoint), ("ZTS_CA_BUNDLE", self.ca_bundle),
            ("ZTS_LRO_POLL_SECONDS", self.lro_poll_seconds)) if value}


APP_ROOT = Path(__file__).resolve().parent.parent  # where function_app.py is deployed


def _app_relative(path: str) -> Path:
    """A relative setting path is read from the app's folder, whatever the working directory."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else APP_ROOT / candidate
