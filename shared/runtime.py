"""The Functions app's composition root: settings -> adapters -> services, built lazily on first
use and reused while the instance stays warm (nothing happens at import time).

The event path keeps an impact index in memory, built from the stored inventory on the first
event an instance sees (a cold start pays one inventory load) and updated event by event after.
A full discovery run replaces it. Reconciles and the analytics timer share one normalized
inventory, loaded again only when the store's generation token moved (see
:meth:`Runtime.stored_inventory`).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.adapters.arm_nsg import ArmNsgGateway
    from shared.adapters.arm_resources import ArmResourceReader
    from shared.adapters.audit_store import TableAuditLog
    from shared.adapters.json_queue import JsonQueue
    from shared.adapters.nsg_queue import StorageNsgQueue
    from shared.adapters.run_store import TableRunStore
    from shared.adapters.table_store import TableInventoryStore
    from shared.domain.discovery import DiscoveryScope
    from shared.domain.inventory import Inventory
    from shared.policy.model import Policy
    from shared.ports import ResourceSource
    from shared.services.alerting import AlertRouter
    from shared.services.enforcement import Reconciler
    from shared.services.events import EventProcessor


#: A cached inventory is loaded again after this long even when the store's generation token
#: did not move: a bound on staleness should anything write the table behind the store's back.
INVENTORY_MAX_AGE_SECONDS: Final = 900.0


@dataclass(frozen=True, slots=True)
class _CachedInventory:
    token: str
    loaded_at: float
    inventory: Inventory


@dataclass
class Runtime:
    settings: Settings
    credential: TokenCredential | None = None  # None: DefaultAzureCredential on first use
    monotonic: Callable[[], float] = time.monotonic
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _built: dict[str, Any] = field(default_factory=dict)
    _inventory_lock: threading.Lock = field(default_factory=threading.Lock)
    _inventory: _CachedInventory | None = None

    def _once(self, name: str, build: Any) -> Any:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    def identity(self) -> TokenCredential:
        if self.credential is None:
            from shared.adapters.azure_clients import default_credential

            self.credential = default_credential()
        return self.credential

    def arm(self) -> Any:
        from shared.adapters.azure_clients import ArmSettings

        return ArmSettings.from_env(self.settings.arm_environment())

    def policy(self) -> Policy:
        def build() -> Policy:
            from shared.policy.loader import load_policy_file
            from shared.settings import SettingsError

            self.settings.require("policy")
            assert self.settings.policy_path is not None
            loaded = load_policy_file(self.settings.policy_path)
            if loaded.policy is None:
                raise SettingsError(f"policy {self.settings.policy_path}: {e}"
                                    for e in loaded.errors)
            return loaded.policy
        result: Policy = self._once("policy", build)
        return result

    def inventory_store(self) -> TableInventoryStore:
        def build() -> TableInventoryStore:
            from shared.adapters.table_store import TableInventoryStore

            s = self.settings.require("storage")
            if s.storage_connection_string:
                return TableInventoryStore.from_connection_string(s.storage_connection_string,
                                                                  s.inventory_table)
            return TableInventoryStore.from_endpoint(s.table_endpoint, self.identity(),
                                                     s.inventory_table)
        result: TableInventoryStore = self._once("inventory_store", build)
        return result

    def audit(self) -> TableAuditLog:
        def build() -> TableAuditLog:
            from shared.adapters.audit_store import TableAuditLog

            s = self.settings.require("storage")
            if s.storage_connection_string:
                return TableAuditLog.from_connection_string(s.storage_connection_string,
                                                            s.table_prefix)
            return TableAuditLog.from_endpoint(s.table_endpoint, self.identity(), s.table_prefix)
        result: TableAuditLog = self._once("audit", build)
        return result

    def queue(self) -> StorageNsgQueue:
        def build() -> StorageNsgQueue:
            from shared.adapters.nsg_queue import StorageNsgQueue

            s = self.settings.require("storage", "queue")
            ledger = f"{s.table_prefix}Reconciled"
            if s.storage_connection_string:
                queue = StorageNsgQueue.from_connection_string(s.storage_connection_string,
                                                               table_name=ledger)
            else:
                queue = StorageNsgQueue.from_endpoints(s.queue_endpoint, s.table_endpoint,
                                                       self.identity(), table_name=ledger)
            queue.create_queue()
            return queue
        result: StorageNsgQueue = self._once("queue", build)
        return result

    def reader(self) -> ArmResourceReader:
        def build() -> ArmResourceReader:
            from shared.adapters.arm_resources import ArmResourceReader

            return ArmResourceReader(self.identity(), self.arm())
        result: ArmResourceReader = self._once("reader", build)
        return result

    def gateway(self) -> ArmNsgGateway:
        def build() -> ArmNsgGateway:
            from shared.adapters.arm_nsg import ArmNsgGateway

            return ArmNsgGateway(self.identity(), self.arm())
        result: ArmNsgGateway = self._once("gateway", build)
        return result

    def run_store(self) -> TableRunStore:
        def build() -> TableRunStore:
            from shared.adapters.run_store import TableRunStore

            s = self.settings.require("storage")
            if s.storage_connection_string:
                return TableRunStore.from_connection_string(s.storage_connection_string,
                                                            s.table_prefix)
            return TableRunStore.from_endpoint(s.table_endpoint, self.identity(), s.table_prefix)
        result: TableRunStore = self._once("run_store", build)
        return result

    def resync_queue(self) -> JsonQueue:
        def build() -> JsonQueue:
            from shared.adapters.json_queue import RESYNC_QUEUE, JsonQueue

            s = self.settings.require("storage", "queue")
            queue = (JsonQueue.from_connection_string(s.storage_connection_string, RESYNC_QUEUE)
                     if s.storage_connection_string
                     else JsonQueue.from_endpoint(s.queue_endpoint, RESYNC_QUEUE,
                                                  self.identity()))
            queue.create()
            return queue
        result: JsonQueue = self._once("resync_queue", build)
        return result

    def sources(self) -> tuple[ResourceSource, ResourceSource]:
        """(Resource Graph, ARM listing fallback), new for each run (request counters)."""
        from shared.adapters.arm_listing import ArmListingSource
        from shared.adapters.resource_graph import ResourceGraphSource

        return (ResourceGraphSource(self.identity(), self.arm()),
                ArmListingSource(self.identity(), self.arm()))

    def scope(self, subscriptions: tuple[str, ...] = (),
              management_group: str = "") -> DiscoveryScope:
        from shared.domain.discovery import DiscoveryScope

        if subscriptions or management_group:
            return DiscoveryScope(subscriptions, management_group or None)
        return DiscoveryScope(self.settings.subscriptions,
                              self.settings.management_group or None)

    def forget_event_index(self) -> None:
        """After a full run: the next event rebuilds the impact index from the new inventory."""
        with self._lock:
            self._built.pop("events", None)

    def alerts(self) -> AlertRouter | None:
        """The alert router, or None when neither an alert configuration (``ZTS_ALERT_CONFIG``)
        nor recipients (``ZTS_EMAIL_RECIPIENTS``: every finding by email) are deployed: findings
        are then only logged. Recipients also fill a configuration's email channel that lists
        no addresses."""
        def build() -> AlertRouter | None:
            import os

            from shared.adapters.acs_email import AcsEmailChannel
            from shared.adapters.alert_state import TableAlertState
            from shared.adapters.teams_webhook import TeamsWebhookChannel
            from shared.alerts.config_loader import load_alert_config, recipients_alert_config
            from shared.services.alerting import AlertRouter
            from shared.settings import SettingsError

            path = self.settings.alert_config_path
            recipients = self.settings.email_recipients
            if path is None and not recipients:
                return None
            loaded = recipients_alert_config(recipients) if path is None else \
                load_alert_config(path.read_text(encoding="utf-8"), str(path), recipients)
            if loaded.config is None:
                raise SettingsError(f"alert config: {issue}" for issue in loaded.errors)
            env = dict(os.environ)
            if self.settings.storage_connection_string:
                env.setdefault("ZTS_ALERT_STATE_CONNECTION_STRING",
                               self.settings.storage_connection_string)
            state = TableAlertState.from_env(env, self.identity)
            if state is None:
                raise SettingsError(["alerts need ZTS_STORAGE_TABLE_ENDPOINT for their state"])
            config = loaded.config
            email = AcsEmailChannel.from_env(env, self.identity) if config.email_enabled else None
            if config.email_enabled and email is None:
                raise SettingsError(["alerts go by email but neither ZTS_ACS_ENDPOINT nor "
                                     "ZTS_ACS_CONNECTION_STRING is set"])
            teams = TeamsWebhookChannel.from_env(env) if config.teams_enabled else None
            return AlertRouter(config, state, email, teams)
        result: AlertRouter | None = self._once("alerts", build)
        return result

    def analytics(self) -> tuple[Any, Any, dict[str, str], Any]:
        """(query engine, detection catalog, queries, analytics config). The engine is Azure Data
        Explorer when ``ZTS_ADX_CLUSTER_URI`` is set, else the Log Analytics workspace."""
        def build() -> tuple[Any, Any, dict[str, str], Any]:
            from shared.adapters.analytics_files import load_analytics_config, load_detections
            from shared.analytics.config import AnalyticsConfig
            from shared.settings import SettingsError

            s = self.settings.require("analytics")
            config = AnalyticsConfig()
            if s.analytics_config_path is not None:
                loaded = load_analytics_config(s.analytics_config_path)
                if loaded.config is None:
                    raise SettingsError(f"analytics config {s.analytics_config_path}: {e}"
                                        for e in loaded.errors)
                config = loaded.config
            engine: Any
            if s.analytics_backend == "adx":
                from shared.adapters.adx import AdxEngine

                engine = AdxEngine.connect(self.identity(), s.adx_cluster_uri, s.adx_database,
                                           ca_bundle=s.ca_bundle or None,
                                           tables=s.adx_tables())
            else:
                from shared.adapters.log_analytics import LogAnalyticsEngine

                options: dict[str, Any] = {}
                if s.ca_bundle:
                    options["connection_verify"] = s.ca_bundle
                engine = LogAnalyticsEngine.connect(self.identity(), s.la_workspace_id,
                                                    endpoint=s.la_endpoint or None, **options)
            catalog, queries = load_detections()
            return engine, catalog, queries, config
        result: tuple[Any, Any, dict[str, str], Any] = self._once("analytics", build)
        return result

    def stored_inventory(self) -> Inventory:
        """The stored inventory, normalized, shared by every caller of this instance (it is
        immutable). A table scan costs about a minute at 100k NICs, so the load is reused while
        the store's generation token stays the same (one row read per call) and for at most
        :data:`INVENTORY_MAX_AGE_SECONDS`. The token is read *before* the load: a write that
        races the load leaves a token this load did not see, so the next call loads again."""
        from shared.domain.normalize import normalize

        store = self.inventory_store()
        with self._inventory_lock:
            token = store.generation()
            now = self.monotonic()
            cached = self._inventory
            if cached is not None and cached.token == token \
                    and now - cached.loaded_at < INVENTORY_MAX_AGE_SECONDS:
                return cached.inventory
            inventory = normalize(store.load())
            self._inventory = _CachedInventory(token, now, inventory)
            return inventory

    def events(self) -> EventProcessor:
        def build() -> EventProcessor:
            from shared.policy.impact import ImpactIndex
            from shared.services.events import EventProcessor

            own = {self.settings.own_client_id} - {""}
            processor = EventProcessor(ImpactIndex(self.policy(), self.stored_inventory()),
                                       self.reader(), self.inventory_store(), self.queue(),
                                       own_callers=own)
            # the index lives as long as the instance: move it (and the inventory it holds)
            # out of the cyclic collector's generations, or every full collection walks 100k
            # NICs' worth of objects in the middle of an event
            gc.freeze()
            return processor
        result: EventProcessor = self._once("events", build)
        return result

    def reconciler(self, trigger: str) -> Reconciler:
        from shared.services.enforcement import Reconciler

        gateway = self.gateway() if self.settings.enforcement_enabled else None
        actor = f"app:{self.settings.own_client_id or 'managed-identity'}"
        return Reconciler(self.policy(), gateway, self.audit(), trigger=trigger, actor=actor)


_RUNTIME: Runtime | None = None
_RUNTIME_LOCK = threading.Lock()


def get_runtime() -> Runtime:
    """The instance's runtime (settings read on first use)."""
    global _RUNTIME  # noqa: PLW0603 - one composition root per worker process
    with _RUNTIME_LOCK:
        if _RUNTIME is None:
            _RUNTIME = Runtime(Settings.from_env())
        return _RUNTIME


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime (tests, the local runner) or drop it so the next use rebuilds."""
    global _RUNTIME  # noqa: PLW0603
    with _RUNTIME_LOCK:
        _RUNTIME = runtime
