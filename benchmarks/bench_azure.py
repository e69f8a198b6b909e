"""Azure benchmark: discovery and reconcile through the real SDK clients against the HTTPS fake.

1. Discovery of a generated tenant (default 1,000 subscriptions, 100k NICs): Resource Graph
   (pages of 1,000, subscription batches of 300) against the per-subscription ARM fallback in the
   same run. Reported: requests, rows, wall time, and time spent waiting for the Resource Graph
   quota (the fake enforces the documented 15 queries per 5 s window, as the service does).
2. Reconcile of an estate with ~1,000 NSGs already in line with the policy, after 10 of them
   were edited by hand: writes made (target: exactly 10) and wall time, against planning alone.

Usage: ``.venv/bin/python benchmarks/bench_azure.py [--subscriptions 1000 --nics-per-vnet 100]
[--skip-fallback]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from azure.core.credentials import AccessToken  # noqa: E402

from shared.adapters.arm_listing import ArmListingSource  # noqa: E402
from shared.adapters.arm_nsg import ArmNsgGateway  # noqa: E402
from shared.adapters.azure_clients import ArmSettings  # noqa: E402
from shared.adapters.resource_graph import ResourceGraphSource  # noqa: E402
from shared.domain.discovery import DiscoveryScope  # noqa: E402
from shared.domain.normalize import normalize  # noqa: E402
from shared.policy.apply import rows_after  # noqa: E402
from shared.policy.compiler import compile_policy  # noqa: E402
from shared.policy.model import (  # noqa: E402
    Action,
    EnforcementPoint,
    Group,
    Ownership,
    Policy,
    PortRange,
    Posture,
    Protocol,
    Rule,
    TagsSelector,
)
from shared.policy.planner import build_plan  # noqa: E402
from shared.sample.estate import scaled_estate  # noqa: E402
from shared.services.discovery import discover  # noqa: E402
from shared.services.enforcement import Reconciler  # noqa: E402
from tests.fakes.azure import FakeAzure  # noqa: E402


class StaticCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)


def settings(fake: FakeAzure) -> ArmSettings:
    return ArmSettings(arm_url=fake.url, ca_bundle=fake.ca_path, polling_interval=0)


def bench_discovery(subscriptions: int, nics_per_vnet: int, *, fallback: bool) -> None:
    rows = scaled_estate(subscriptions, 1, nics_per_vnet, seed=3)
    nics = sum(1 for r in rows if r["type"] == "microsoft.network/networkinterfaces")
    print(f"Discovery: {subscriptions} subscriptions, {nics} NICs, {len(rows)} rows")
    print(f"{'source':>16} {'requests':>9} {'rows':>8} {'rows/request':>13} {'wall s':>8} "
          f"{'quota wait s':>13} {'ok':>4}")
    cred = StaticCredential()
    with FakeAzure(rows, arm_page_size=1000) as fake:
        graph = ResourceGraphSource(cred, settings(fake))
        started = time.perf_counter()
        result = discover(DiscoveryScope(), graph)
        wall = time.perf_counter() - started
        per_resource = fake.count("GET", "/providers/Microsoft.Network/")
        print(f"{'resource-graph':>16} {graph.requests:>9} {len(result.rows):>8} "
              f"{len(result.rows) / graph.requests:>13.0f} {wall:>8.2f} "
              f"{sum(graph.quota_waits):>13.2f} {result.ok!s:>4}")
        assert per_resource == 0, "Resource Graph discovery made per-resource ARM calls"
        if fallback:
            arm = ArmListingSource(cred, settings(fake), concurrency=8)
            started = time.perf_counter()
            result = discover(DiscoveryScope(), arm)
            wall = time.perf_counter() - started
            print(f"{'arm (fallback)':>16} {arm.requests:>9} {len(result.rows):>8} "
                  f"{len(result.rows) / arm.requests:>13.0f} {wall:>8.2f} {0:>13.2f} "
                  f"{result.ok!s:>4}")


def tier_policy() -> Policy:
    groups = tuple(Group(t, TagsSelector((("tier", t),))) for t in ("web", "app", "db"))
    rules = (
        Rule("internet-to-web", 100, "internet", "web", (PortRange(443, 443),), Protocol.TCP,
             Action.ALLOW),
        Rule("web-to-app", 110, "web", "app", (PortRange(8443, 8443),), Protocol.TCP,
             Action.ALLOW),
        Rule("app-to-db", 120, "app", "db", (PortRange(1433, 1433),), Protocol.TCP,
             Action.ALLOW),
    )
    return Policy(Posture(), EnforcementPoint.SUBNET, groups, rules,
                  Ownership(band_low=1000, band_high=3899))


def bench_reconcile(vnets: int, edited: int) -> None:
    policy = tier_policy()
    raw = scaled_estate(vnets // 3, 3, 10, seed=5)
    inventory = normalize(raw)
    plan = build_plan(compile_policy(policy, inventory), inventory, policy.ownership)
    in_line = rows_after(raw, plan.nsgs, policy.ownership)  # as if zts had applied already
    nsgs = sorted(r["id"] for r in in_line
                  if r["type"] == "microsoft.network/networksecuritygroups")
    cred = StaticCredential()
    with FakeAzure(in_line) as fake:
        victims = nsgs[:: max(1, len(nsgs) // edited)][:edited]
        for nsg_id in victims:  # a hand edit of a zts-owned rule on each
            body = fake.nsg(nsg_id)
            ours = next(r for r in body["properties"]["securityRules"]
                        if r["name"].startswith("zts-") and r["properties"]["access"] == "Allow")
            ours["properties"]["destinationPortRange"] = "*"
            ours["properties"].pop("destinationPortRanges", None)
            fake.set_nsg(nsg_id, body)
        graph = ResourceGraphSource(cred, settings(fake))
        started = time.perf_counter()
        result = discover(DiscoveryScope(), graph)
        discovered = time.perf_counter() - started
        live = normalize(result.rows)
        started = time.perf_counter()
        dry = Reconciler(policy, None, None).run(live, apply=False)
        planning = time.perf_counter() - started
        gateway = ArmNsgGateway(cred, settings(fake))
        started = time.perf_counter()
        report = Reconciler(policy, gateway, None).run(live, apply=True)
        applying = time.perf_counter() - started
        puts = fake.count("PUT")
    print(f"\nReconcile: {len(nsgs)} NSGs in line with the policy, {edited} edited by hand")
    print(f"{'NSGs':>6} {'to change':>10} {'writes':>7} {'PUTs seen':>10} {'discover s':>11} "
          f"{'plan s':>7} {'plan+apply s':>13} {'apply/plan':>11} {'ok':>4}")
    print(f"{len(nsgs):>6} {len(dry.outcomes):>10} {report.writes:>7} {puts:>10} "
          f"{discovered:>11.2f} {planning:>7.2f} {applying:>13.2f} "
          f"{applying / planning:>11.2f} {report.ok!s:>4}")
    assert report.writes == puts == edited, "reconcile must write exactly the edited NSGs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--nics-per-vnet", type=int, default=100)
    parser.add_argument("--skip-fallback", action="store_true")
    parser.add_argument("--reconcile-vnets", type=int, default=336, help="3 NSGs per VNet")
    parser.add_argument("--edited", type=int, default=10)
    args = parser.parse_args()
    bench_discovery(args.subscriptions, args.nics_per_vnet, fallback=not args.skip_fallback)
    bench_reconcile(args.reconcile_vnets, args.edited)


if __name__ == "__main__":
    main()
