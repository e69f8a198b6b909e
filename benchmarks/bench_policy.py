"""Policy benchmark: resolve groups, compile and plan on scaled estates.

Estates: 1k, 10k and 100k NICs across 100 subscriptions (1k uses 10), 200 groups and 1,000
policy rules generated deterministically from the estate's tags, ASGs, VNets and subscriptions.
Each size runs in its own subprocess (peak RSS is its own). The baseline in the same run is the
generate + normalize step every plan needs anyway (the estate is streamed into the normalizer),
so "(compile + plan) / (gen + norm)" is machine-independent. Compile and plan pause Python's
cyclic garbage collector (shared/policy/gc_pause.py); the full collection it then owes is timed
right after them ("gc s") and counted in "(c+p)", "us/NIC" and the CPU time.

Usage: ``.venv/bin/python benchmarks/bench_policy.py [--sizes 1000,10000,100000]``
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.policy.model import Selector

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHAPES = {1_000: (10, 2, 50), 10_000: (100, 2, 50), 100_000: (100, 10, 100)}
GROUPS, RULES = 200, 1_000


def make_policy(inventory: Any, seed: int = 7) -> Any:
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


def measure(nics: int) -> dict[str, Any]:
    from shared.domain.normalize import normalize
    from shared.policy.compiler import compile_policy
    from shared.policy.planner import build_plan
    from shared.sample.estate import iter_scaled_estate

    started = time.perf_counter()  # streamed: the raw rows are never all in memory at once
    inventory = normalize(iter_scaled_estate(*SHAPES[nics], seed=1))
    normalize_s = time.perf_counter() - started
    policy = make_policy(inventory)
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
    return {
        "nics": len(inventory.nics), "nsgs": len(plan.nsgs),
        "rules": sum(len(p.desired) for p in plan.nsgs),
        "asg_rules": sum(1 for p in plan.nsgs for r in p.desired
                         if r.source_asgs or r.destination_asgs),
        "errors": len(plan.errors) + sum(len(p.errors) for p in plan.nsgs),
        "normalize_s": normalize_s, "compile_s": compile_s, "plan_s": plan_s, "gc_s": gc_s,
        "cpu_s": cpu_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    print(f"Compile + plan: {GROUPS} groups, {RULES} rules; one subprocess per size")
    print(f"{'NICs':>8} {'NSGs':>6} {'rules out':>10} {'ASG rules':>10} {'errors':>7} "
          f"{'gen+norm s':>12} {'compile s':>10} {'plan s':>7} {'gc s':>5} {'(c+p)/g+n':>11} "
          f"{'us/NIC':>7} {'c+p CPU s':>10} {'peak RSS MiB':>13}")
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--child", str(size)], check=True,
                             capture_output=True, text=True, cwd=ROOT)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        work = r["compile_s"] + r["plan_s"] + r.get("gc_s", 0.0)
        print(f"{r['nics']:>8} {r['nsgs']:>6} {r['rules']:>10} {r['asg_rules']:>10} "
              f"{r['errors']:>7} {r['normalize_s']:>12.2f} {r['compile_s']:>10.2f} "
              f"{r['plan_s']:>7.2f} {r.get('gc_s', 0.0):>5.2f} {work / r['normalize_s']:>11.2f} "
              f"{work / r['nics'] * 1e6:>7.1f} {r['cpu_s']:>10.2f} {r['peak_rss_mib']:>13.0f}")


if __name__ == "__main__":
    main()
