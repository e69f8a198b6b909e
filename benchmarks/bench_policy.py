"""Policy benchmark: resolve groups, compile, plan and render the plan on scaled estates.

Estates: 1k, 10k and 100k NICs, every one across 100 subscriptions (one hub VNet each at 1k,
a hub and a spoke at 10k, a hub and nine spokes at 100k; see ``SHAPES``), with 200 groups and
1,000 policy rules generated deterministically from the estate. Two scenarios:

* **random** (``make_policy``): deliberately hostile. 200 groups drawn at random from tags, tag
  pairs, ASGs, VNets and subscription+tag selectors, 1,000 rules between random pairs of them
  (90% allow). Most groups scatter over the whole estate, so their CIDR covers are large and
  every NSG receives rules from most groups: their sources exceed Azure's 4,000 prefixes per
  NSG side on about half the NSGs at 10k and on every one at 100k, whose plans fail (the
  planner reports each with the numbers instead of truncating; none at 1k).
* **app** (``app_policy``): what segmentation policies look like, where plans succeed. Per
  subscription (the first 66 by name; the other 34 stay outside the policy, as in a roll-out),
  one group per tier (``tier`` tag within the subscription): internet ingress to web, web ->
  app, app -> db, app and db clusters, jump-host administration and an explicit web -> db deny,
  15 rules each; plus the shared services every subscription uses, the hub DNS servers and
  jump hosts (``role`` tags, estate-wide): 198 + 2 = 200 groups, 990 + 10 = 1,000 rules. (The
  event benchmark's app-scoped policy has a similar layout but 132 rules, and importing it
  would load the Azure SDK and its fakes into the measured process.)

Each scenario and size runs in its own subprocess, so peak RSS is its own. The baseline in the
same run is the generate + normalize step every plan needs anyway (the estate is streamed into
the normalizer), so "(c+p)/g+n" is machine-independent. Compile and plan pause Python's cyclic
garbage collector (shared/policy/gc_pause.py); the full collection it then owes is timed right
after them ("gc s") and counted in "c+p+gc", "(c+p)/g+n", "us/NIC" and the CPU time. Peak RSS
is read after that ("peak MiB"), then the plan is rendered as JSON exactly as ``zts plan --json``
does (``json.dump(plan.as_dict(), indent=2, sort_keys=True)`` into a byte-counting sink; "json
s", "JSON MiB") and peak RSS is read again ("+json MiB").

The growth table compares consecutive sizes: the exponent k in t ~ n^k (log(t2/t1)/log(n2/n1),
n = NICs) of each phase, of c+p+gc and of its ratio to the baseline; "n log n" is that exponent
for n log n itself, and "t/nlogn" is c+p+gc / (n log2 n) relative to the smallest size (at most
1.0: growing no worse than n log n). Times at 1k are a tenth of a second: their exponents are
noisy. Everything printed apart from times and memory is deterministic.

Usage: ``.venv/bin/python benchmarks/bench_policy.py [--sizes 1000,10000,100000]
[--scenario random,app]``
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.domain.inventory import Inventory
    from shared.policy.model import Policy, Selector
    from shared.policy.planner import Plan

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: NICs -> (subscriptions, VNets per subscription, NICs per VNet). Every size spans 100
#: subscriptions. 10 NICs per VNet is the smallest that keeps each hub's two DNS servers and
#: its jump host (the third NIC of the hub's app subnet), so the 1k estate is hubs only (no
#: spokes, peerings or public IPs); 10k adds a spoke per subscription, 100k nine.
SHAPES = {1_000: (100, 1, 10), 10_000: (100, 2, 50), 100_000: (100, 10, 100)}
GROUPS, RULES = 200, 1_000
SCENARIOS = ("random", "app")
APP_SUBSCRIPTIONS = 66  # x 3 tier groups + DNS + jump hosts = 200 groups


def make_policy(inventory: Any, seed: int = 7) -> Any:
    """The hostile policy: random groups and random rules between them (also used by
    bench_events.py)."""
    from shared.policy.model import (
        Action,
        AllOf,
        AsgSelector,
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
        VnetSelector,
    )

    rng = random.Random(seed)
    tags = sorted({(k.lower(), v) for nic in inventory.nics.values()
                   for k, v in (inventory.vm_of(nic).tags if inventory.vm_of(nic) else nic.tags)
                   if k.lower() in {"app", "tier", "env", "cost-center"}})
    asgs = sorted(a.name for a in inventory.asgs.values())
    vnets = sorted(v.name for v in inventory.vnets.values())
    subs = sorted(s.subscription_id for s in inventory.subscriptions.values())
    makers: list[Callable[[], Selector]] = [
        lambda: TagsSelector((rng.choice(tags),)),
        lambda: AllOf((TagsSelector((rng.choice(tags),)), TagsSelector((rng.choice(tags),)))),
        lambda: AsgSelector(rng.choice(asgs)),
        lambda: VnetSelector(rng.choice(vnets)),
        lambda: AllOf((SubscriptionSelector(rng.choice(subs)), TagsSelector((rng.choice(tags),)))),
    ]
    groups = tuple(Group(f"g{i:03d}", rng.choice(makers)()) for i in range(GROUPS))
    rules = []
    for i in range(RULES):
        src, dst = rng.sample(groups, 2)
        port = rng.choice([22, 443, 1433, 3389, 5432, 8080, 8443, 9000])
        rules.append(Rule(f"r{i:04d}", i + 1, src.name, dst.name, (PortRange(port, port),),
                          Protocol.TCP, rng.choice([Action.ALLOW] * 9 + [Action.DENY])))
    return Policy(Posture(), EnforcementPoint.SUBNET, groups, tuple(rules),
                  Ownership(band_low=1000, band_high=3899))


#: Per subscription: (source, destination, ports, protocol, action); "web", "app" and "db" are
#: that subscription's tier groups, the others builtins or shared groups.
_APP_RULES: tuple[tuple[str, str, tuple[tuple[int, int], ...], str, str], ...] = (
    ("internet", "web", ((443, 443),), "tcp", "allow"),
    ("internet", "web", ((80, 80),), "tcp", "allow"),
    ("web", "app", ((8443, 8443),), "tcp", "allow"),
    ("web", "app", ((443, 443),), "tcp", "allow"),
    ("web", "app", ((8080, 8080),), "tcp", "allow"),
    ("app", "app", ((7000, 7001),), "tcp", "allow"),
    ("app", "app", ((6379, 6379),), "tcp", "allow"),
    ("app", "db", ((1433, 1433),), "tcp", "allow"),
    ("app", "db", ((5432, 5432),), "tcp", "allow"),
    ("db", "db", ((5022, 5022),), "tcp", "allow"),
    ("web", "db", ((0, 65535),), "any", "deny"),
    ("jump", "web", ((3389, 3389),), "tcp", "allow"),
    ("jump", "app", ((22, 22),), "tcp", "allow"),
    ("jump", "db", ((22, 22),), "tcp", "allow"),
    ("jump", "app", ((0, 65535),), "icmp", "allow"),
)
#: Shared services, estate-wide: (name, source, destination, ports, protocol, action).
_SHARED_RULES: tuple[tuple[str, str, str, tuple[tuple[int, int], ...], str, str], ...] = (
    ("vnet-to-dns-udp", "VirtualNetwork", "dns", ((53, 53),), "udp", "allow"),
    ("vnet-to-dns-tcp", "VirtualNetwork", "dns", ((53, 53),), "tcp", "allow"),
    ("jump-to-dns-ssh", "jump", "dns", ((22, 22),), "tcp", "allow"),
    ("jump-to-dns-icmp", "jump", "dns", ((0, 65535),), "icmp", "allow"),
    ("jump-to-jump-ssh", "jump", "jump", ((22, 22),), "tcp", "allow"),
    ("jump-to-jump-rdp", "jump", "jump", ((3389, 3389),), "tcp", "allow"),
    ("monitor-to-dns", "AzureMonitor", "dns", ((443, 443),), "tcp", "allow"),
    ("lb-to-dns", "AzureLoadBalancer", "dns", ((53, 53),), "tcp", "allow"),
    ("internet-to-dns-deny", "internet", "dns", ((0, 65535),), "any", "deny"),
    ("internet-to-jump-deny", "internet", "jump", ((0, 65535),), "any", "deny"),
)


def app_policy(inventory: Inventory) -> Policy:
    """The realistic policy: per-subscription tier groups, shared DNS and jump hosts."""
    from shared.policy.model import (
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

    subs = sorted(inventory.subscriptions.values(), key=lambda s: s.display_name or "")
    groups = [Group("dns", TagsSelector((("role", "dns"),))),
              Group("jump", TagsSelector((("role", "jumphost"),)))]
    rules: list[Rule] = []

    def rule(name: str, src: str, dst: str, ports: tuple[tuple[int, int], ...], protocol: str,
             action: str) -> Rule:
        return Rule(name, len(rules) + 1, src, dst, tuple(PortRange(*p) for p in ports),
                    Protocol(protocol), Action(action))

    for i, sub in enumerate(subs[:APP_SUBSCRIPTIONS]):
        names = {"internet": "internet", "jump": "jump"}
        for tier in ("web", "app", "db"):
            names[tier] = f"s{i:02d}-{tier}"
            groups.append(Group(names[tier], AllOf((SubscriptionSelector(sub.subscription_id),
                                                    TagsSelector((("tier", tier),))))))
        for src, dst, ports, protocol, action in _APP_RULES:
            port = "any" if ports == ((0, 65535),) else "-".join(map(str, sorted(set(ports[0]))))
            rules.append(rule(f"s{i:02d}-{src}-to-{dst}-{protocol}-{port}", names[src],
                              names[dst], ports, protocol, action))
    rules += [rule(*spec) for spec in _SHARED_RULES]
    assert len(groups) == GROUPS and len(rules) == RULES, (len(groups), len(rules))
    return Policy(Posture(), EnforcementPoint.SUBNET, tuple(groups), tuple(rules),
                  Ownership(band_low=1000, band_high=3899))


class _CountingSink(io.RawIOBase):
    """A binary sink that keeps only the number of bytes written (the plan JSON is hundreds of
    MiB for the hostile policy at 100k)."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        self.size += n
        return n


def render_json(plan: Plan) -> int:
    """``zts plan --json`` (shared/cli.py cmd_plan) into a sink: the bytes it writes."""
    sink = _CountingSink()
    with io.TextIOWrapper(io.BufferedWriter(sink), encoding="utf-8") as out:
        json.dump(plan.as_dict(), out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        return sink.size


def _error_kind(message: str) -> str:
    kinds = (("do not fit in the priority band", "band"), ("rules after apply exceed", "rules"),
             ("addresses/ranges exceed", "prefixes"), ("ASGs exceed", "asgs"),
             ("ASGs; Azure allows", "asgs/side"), ("not owned by zts", "conflict"),
             ("is already used by", "priority"))
    return next((kind for text, kind in kinds if text in message), "other")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(nics: int, scenario: str) -> dict[str, Any]:
    from shared.domain.normalize import normalize
    from shared.policy.compiler import compile_policy
    from shared.policy.planner import build_plan
    from shared.sample.estate import iter_scaled_estate

    started = time.perf_counter()  # streamed: the raw rows are never all in memory at once
    inventory = normalize(iter_scaled_estate(*SHAPES[nics], seed=1))
    normalize_s = time.perf_counter() - started
    policy = make_policy(inventory) if scenario == "random" else app_policy(inventory)
    cpu_started = time.process_time()
    started = time.perf_counter()
    compiled = compile_policy(policy, inventory)
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    plan = build_plan(compiled, inventory, policy.ownership)
    plan_s = time.perf_counter() - started
    started = time.perf_counter()
    gc.collect()  # compile and plan pause the cyclic collector: its deferred pass counts here
    gc_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    peak = _peak_mib()
    started = time.perf_counter()
    json_bytes = render_json(plan)
    json_s = time.perf_counter() - started
    failed = [p for p in plan.nsgs if p.errors]
    why = Counter(kind for p in failed for kind in sorted({_error_kind(m) for m in p.errors}))
    return {
        "scenario": scenario, "nics": len(inventory.nics), "nsgs": len(inventory.nsgs),
        "planned": len(plan.nsgs), "changed": sum(1 for p in plan.nsgs
                                                  if not p.errors and not p.is_noop),
        "failed": len(failed), "why": ", ".join(f"{k} {n}" for k, n in sorted(why.items())),
        "rules": sum(len(p.desired) for p in plan.nsgs),
        "asg_rules": sum(1 for p in plan.nsgs for r in p.desired
                         if r.source_asgs or r.destination_asgs),
        "errors": len(plan.errors) + sum(len(p.errors) for p in plan.nsgs),
        "warnings": len(plan.warnings) + sum(len(p.warnings) for p in plan.nsgs),
        "normalize_s": normalize_s, "compile_s": compile_s, "plan_s": plan_s, "gc_s": gc_s,
        "cpu_s": cpu_s, "json_s": json_s, "json_mib": json_bytes / 2**20,
        "peak_rss_mib": peak, "json_rss_mib": _peak_mib(),
    }


def _work(r: dict[str, Any]) -> float:
    return float(r["compile_s"] + r["plan_s"] + r["gc_s"])


def _exponent(a: float, b: float, n_a: int, n_b: int) -> str:
    if a <= 0 or b <= 0:
        return "-"
    return f"{math.log(b / a) / math.log(n_b / n_a):.2f}"


def _nlogn(n: int) -> float:
    return n * math.log2(n)


def report(results: list[dict[str, Any]]) -> None:
    print(f"\nPlan output ({GROUPS} groups, {RULES} rules; 'failed': NSG plans with errors, "
          "by kind)")
    print(f"{'scenario':>8} {'NICs':>8} {'NSGs':>5} {'planned':>7} {'changed':>7} "
          f"{'failed':>6} {'errors':>6} {'warnings':>8} {'rules out':>9} {'ASG rules':>9} "
          f"{'JSON MiB':>8}  why failed")
    for r in results:
        print(f"{r['scenario']:>8} {r['nics']:>8} {r['nsgs']:>5} {r['planned']:>7} "
              f"{r['changed']:>7} {r['failed']:>6} {r['errors']:>6} {r['warnings']:>8} "
              f"{r['rules']:>9} {r['asg_rules']:>9} {r['json_mib']:>8.1f}  {r['why'] or '-'}")
    print("\nCost (s; c+p+gc = compile + plan + owed gc; g+n = generate + normalize, the "
          "baseline)")
    print(f"{'scenario':>8} {'NICs':>8} {'g+n s':>6} {'compile':>7} {'plan':>5} {'gc':>5} "
          f"{'c+p+gc':>6} {'(c+p)/g+n':>9} {'us/NIC':>6} {'CPU s':>6} {'json s':>6} "
          f"{'json/c+p':>8} {'peak MiB':>8} {'+json MiB':>9}")
    for r in results:
        work = _work(r)
        print(f"{r['scenario']:>8} {r['nics']:>8} {r['normalize_s']:>6.2f} "
              f"{r['compile_s']:>7.2f} {r['plan_s']:>5.2f} {r['gc_s']:>5.2f} {work:>6.2f} "
              f"{work / r['normalize_s']:>9.2f} {work / r['nics'] * 1e6:>6.1f} "
              f"{r['cpu_s']:>6.2f} {r['json_s']:>6.2f} {r['json_s'] / work:>8.2f} "
              f"{r['peak_rss_mib']:>8.0f} {r['json_rss_mib']:>9.0f}")
    print("\nGrowth between consecutive sizes: exponent k of t ~ n^k (n = NICs); 't/nlogn' is "
          "c+p+gc / (n log2 n) relative to the smallest size")
    print(f"{'scenario':>8} {'NICs':>15} {'compile':>7} {'plan':>5} {'gc':>5} {'c+p+gc':>6} "
          f"{'ratio':>5} {'json':>5} {'rules':>5} {'n log n':>7} {'t/nlogn':>7}")
    for scenario in dict.fromkeys(r["scenario"] for r in results):
        rows = sorted((r for r in results if r["scenario"] == scenario), key=lambda r: r["nics"])
        for a, b in pairwise(rows):
            na, nb = a["nics"], b["nics"]
            k = {field: _exponent(a[field], b[field], na, nb)
                 for field in ("compile_s", "plan_s", "gc_s", "json_s", "rules")}
            ratio = _exponent(_work(a) / a["normalize_s"], _work(b) / b["normalize_s"], na, nb)
            relative = (_work(b) / _nlogn(nb)) / (_work(rows[0]) / _nlogn(rows[0]["nics"]))
            print(f"{scenario:>8} {f'{na}->{nb}':>15} {k['compile_s']:>7} {k['plan_s']:>5} "
                  f"{k['gc_s']:>5} {_exponent(_work(a), _work(b), na, nb):>6} {ratio:>5} "
                  f"{k['json_s']:>5} {k['rules']:>5} "
                  f"{_exponent(_nlogn(na), _nlogn(nb), na, nb):>7} {relative:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help=f"comma-separated NIC counts, of {sorted(SHAPES)}")
    parser.add_argument("--scenario", default=",".join(SCENARIOS),
                        help=f"comma-separated, of {list(SCENARIOS)}")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    scenarios = [s.strip() for s in args.scenario.split(",")]
    for name, values, known in (("size", sizes, SHAPES), ("scenario", scenarios, SCENARIOS)):
        unknown = [v for v in values if v not in known]
        if unknown:
            parser.error(f"unknown {name}(s) {unknown}: choose from {list(known)}")
    if args.child:
        print(json.dumps(measure(args.child, scenarios[0])))
        return
    print(f"Policy: compile + plan + JSON, {GROUPS} groups, {RULES} rules, estates of "
          f"{', '.join(f'{n:,}' for n in sizes)} NICs across 100 subscriptions; one "
          "subprocess per scenario and size", flush=True)
    results = []
    for scenario in scenarios:
        for size in sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(size),
                                  "--scenario", scenario], check=True, capture_output=True,
                                 text=True, cwd=ROOT)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"  {scenario} {r['nics']:,} NICs: c+p+gc {_work(r):.2f} s, "
                  f"{r['failed']} NSG plans failed", file=sys.stderr, flush=True)
    report(results)


if __name__ == "__main__":
    main()
