"""Event benchmark: per-event processing against the full recompute it replaces.

Estate: 100k NICs (100 subscriptions x 10 VNets x 100 NICs), 200 groups, two policies:

* **app-scoped** — what segmentation policies look like: per subscription (66 of them), its web
  and app tiers and its hub's DNS servers (200 groups with two estate-wide ones), web -> app on
  8443 and app -> DNS on 53 inside each subscription;
* **random** — the policy benchmark's deliberately hostile policy (200 groups drawn from tags,
  ASGs, VNets and subscriptions at random, 1,000 random rules between them), where every group
  is tied to most others.

Each event is a VM re-tag (a workload moving between tiers or apps): the full path is measured,
from receipt to queued NSG requests — the ARM re-read through the HTTPS fake, the inventory
table write and the per-NSG requests on Azurite — as well as the impact analysis alone. The
baseline in the same run is the full compile + plan that the event path replaces.

Then the reconcile consumer's inventory on a stored 10k-NIC estate: the first load (table scan
and normalize) against the cached calls that follow (one generation-token read each).

Usage: ``.venv/bin/python benchmarks/bench_events.py [--events 200] [--nics 100000]
[--consumer-nics 10000|0]``
"""

from __future__ import annotations

import argparse
import copy
import gc
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from azure.core.credentials import AccessToken  # noqa: E402
from bench_policy import make_policy  # noqa: E402

from shared.adapters.arm_resources import ArmResourceReader  # noqa: E402
from shared.adapters.azure_clients import ArmSettings  # noqa: E402
from shared.adapters.nsg_queue import StorageNsgQueue  # noqa: E402
from shared.adapters.table_store import TableInventoryStore  # noqa: E402
from shared.domain.inventory import Inventory  # noqa: E402
from shared.domain.normalize import normalize  # noqa: E402
from shared.local.azurite import Azurite  # noqa: E402
from shared.policy.compiler import compile_policy  # noqa: E402
from shared.policy.impact import ImpactIndex  # noqa: E402
from shared.policy.model import (  # noqa: E402
    Action,
    AllOf,
    EnforcementPoint,
    Group,
    Ownership,
    Policy,
    PortRange,
    Posture,
    Protocol,
    Rule,
    SubscriptionSelector,
    TagsSelector,
)
from shared.policy.planner import build_plan  # noqa: E402
from shared.sample.estate import scaled_estate  # noqa: E402
from shared.services.events import EventProcessor  # noqa: E402
from tests.fakes.azure import FakeAzure  # noqa: E402

VM_TYPE = "microsoft.compute/virtualmachines"


class StaticCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)


def app_scoped_policy(inventory: Inventory) -> Policy:
    subs = sorted(s.subscription_id for s in inventory.subscriptions.values())
    groups: list[Group] = []
    rules: list[Rule] = []
    for i, sub in enumerate(subs[:66]):
        dns = Group(f"s{i:02d}-dns", AllOf((SubscriptionSelector(sub),
                                            TagsSelector((("role", "dns"),)))))
        web = Group(f"s{i:02d}-web", AllOf((SubscriptionSelector(sub),
                                            TagsSelector((("tier", "web"),)))))
        app = Group(f"s{i:02d}-app", AllOf((SubscriptionSelector(sub),
                                            TagsSelector((("tier", "app"),)))))
        groups += [web, app, dns]
        rules.append(Rule(f"s{i:02d}-web-to-app", 100 + 2 * i, web.name, app.name,
                          (PortRange(8443, 8443),), Protocol.TCP, Action.ALLOW))
        rules.append(Rule(f"s{i:02d}-app-to-dns", 101 + 2 * i, app.name, dns.name,
                          (PortRange(53, 53),), Protocol.UDP, Action.ALLOW))
    groups.append(Group("jump", TagsSelector((("role", "jumphost"),))))
    groups.append(Group("monitoring", TagsSelector((("role", "monitoring"),))))
    return Policy(Posture(), EnforcementPoint.SUBNET, tuple(groups), tuple(rules),
                  Ownership(band_low=1000, band_high=3899))


def events_for(rows: list[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """VM rows re-tagged between tiers: (updated row, event envelope) per event."""
    rng = random.Random(seed)
    vms = [r for r in rows if r["type"] == VM_TYPE and r.get("tags", {}).get("tier")]
    out = []
    for _ in range(count):
        vm = copy.deepcopy(rng.choice(vms))
        vm["tags"]["tier"] = rng.choice([t for t in ("web", "app", "db")
                                         if t != vm["tags"]["tier"]])
        out.append(vm)
    return out


def envelope(resource_id: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "subject": resource_id,
            "eventType": "Microsoft.Resources.ResourceWriteSuccess",
            "eventTime": "2026-11-22T01:00:00Z", "dataVersion": "2",
            "data": {"operationName": "Microsoft.Compute/virtualMachines/write",
                     "resourceUri": resource_id, "status": "Succeeded",
                     "claims": {"appid": "someone-else"}}}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(name: str, policy: Policy, rows: list[dict[str, Any]], inventory: Inventory,
        events: int, azurite: Azurite, *, full_path: bool) -> None:
    started = time.perf_counter()
    plan = build_plan(compile_policy(policy, inventory), inventory, policy.ownership)
    full_s = time.perf_counter() - started
    started = time.perf_counter()
    index = ImpactIndex(policy, inventory)
    index_s = time.perf_counter() - started
    changes = events_for(rows, events, seed=9)
    impact_ms: list[float] = []
    nsgs: list[int] = []
    for vm in changes:  # impact analysis alone, on a copy of the index's state
        t = time.perf_counter()
        impact = index.apply(VM_TYPE, vm["id"], vm)
        impact_ms.append((time.perf_counter() - t) * 1000)
        nsgs.append(len(impact.nsgs))
    path_ms: list[float] = []
    queued = coalesced = 0
    if full_path:
        index = ImpactIndex(policy, inventory)
        gc.freeze()  # as the runtime does: the long-lived index is kept out of the collector's way
        suffix = uuid.uuid4().hex[:8]
        with FakeAzure(rows) as fake, TableInventoryStore.from_connection_string(
                azurite.connection_string, f"inv{suffix}") as store:
            queue = StorageNsgQueue.from_connection_string(azurite.connection_string,
                                                           f"q{suffix}", f"pend{suffix}")
            queue.create_queue()
            reader = ArmResourceReader(StaticCredential(),
                                       ArmSettings(arm_url=fake.url, ca_bundle=fake.ca_path))
            processor = EventProcessor(index, reader, store, queue)
            for vm in changes:
                fake.put_resource(vm)
                outcome = processor.handle(envelope(vm["id"]))
                path_ms.append(outcome.elapsed_ms)
                queued += len(outcome.queued)
                coalesced += len(outcome.coalesced)
            reader.close()
            queue.close()
    print(f"{name:>11} {len(plan.nsgs):>5} {full_s:>8.2f} {index_s:>8.2f} "
          f"{statistics.median(impact_ms):>9.2f} {pct(impact_ms, 99):>9.2f} "
          f"{statistics.median(nsgs):>7.0f} {max(nsgs):>6} "
          + (f"{statistics.median(path_ms):>9.1f} {pct(path_ms, 99):>9.1f} {queued:>7} "
             f"{coalesced:>9} {full_s * 1000 / pct(path_ms, 99):>9.0f}" if path_ms else
             f"{'-':>9} {'-':>9} {'-':>7} {'-':>9} "
             f"{full_s * 1000 / pct(impact_ms, 99):>9.0f}"))


def consumer(rows: list[dict[str, Any]], azurite: Azurite, calls: int) -> None:
    """The reconcile consumer's inventory: the first call scans the table and normalizes; later
    calls on the same instance read the generation token only, until a write moves it."""
    from shared.runtime import Runtime
    from shared.settings import Settings

    with TableInventoryStore.from_connection_string(azurite.connection_string,
                                                    f"cinv{uuid.uuid4().hex[:8]}") as store:
        store.save(rows, "discovery-1")
        runtime = Runtime(Settings(storage_connection_string=azurite.connection_string,
                                   inventory_table=store.table_name),
                          credential=StaticCredential())
        started = time.perf_counter()
        first = runtime.stored_inventory()
        cold_s = time.perf_counter() - started
        cached_ms = []
        for _ in range(calls):
            t = time.perf_counter()
            assert runtime.stored_inventory() is first
            cached_ms.append((time.perf_counter() - t) * 1000)
        vm = next(r for r in rows if r["type"].lower() == VM_TYPE)
        store.save([{**vm, "tags": {**(vm.get("tags") or {}), "moved": "1"}}], "event-1")
        started = time.perf_counter()
        assert runtime.stored_inventory() is not first
        reload_s = time.perf_counter() - started
    print(f"Consumer inventory ({len(first.nics)} NICs, {len(rows)} rows on Azurite): cold load "
          f"{cold_s:.2f} s, cached p50 {statistics.median(cached_ms):.1f} ms p99 "
          f"{pct(cached_ms, 99):.1f} ms over {calls} calls, after a write {reload_s:.2f} s "
          f"(cold/cached p50 {cold_s * 1000 / statistics.median(cached_ms):,.0f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--nics", type=int, default=100_000, choices=[10_000, 100_000])
    parser.add_argument("--consumer-nics", type=int, default=10_000, choices=[0, 10_000],
                        help="estate stored for the reconcile consumer's inventory cache "
                             "(0: skip; 100k would take minutes to store on Azurite)")
    args = parser.parse_args()
    shape = (100, 10, 100) if args.nics == 100_000 else (100, 2, 50)
    rows = scaled_estate(*shape, seed=1)
    inventory = normalize(rows)
    gc.freeze()  # the estate lives for the whole run: keep the collector off it
    print(f"Events: {len(inventory.nics)} NICs, {len(inventory.nsgs)} NSGs, {args.events} VM "
          "re-tags per policy")
    print(f"{'policy':>11} {'NSGs':>5} {'full s':>8} {'index s':>8} {'impact p50':>9} "
          f"{'p99 ms':>9} {'NSGs p50':>7} {'max':>6} {'path p50':>9} {'p99 ms':>9} "
          f"{'queued':>7} {'coalesced':>9} {'full/p99':>9}")
    with Azurite() as azurite:
        run("app-scoped", app_scoped_policy(inventory), rows, inventory, args.events, azurite,
            full_path=True)
        run("random", make_policy(inventory), rows, inventory, args.events, azurite,
            full_path=False)
        if args.consumer_nics:
            consumer(scaled_estate(100, 2, 50, seed=1), azurite, calls=50)


if __name__ == "__main__":
    main()
