"""Inventory benchmark: normalize scaled estates, and persist them to Table Storage (Azurite).

Each size runs in a fresh subprocess so peak memory (ru_maxrss) is its own. Baselines, in the same
run, so the ratios survive a noisy machine:

* normalize vs ``json.loads`` of the same snapshot text: the cost of merely reading the JSON;
* batched ``save`` (entity-group transactions) vs one transaction per resource on a sample.

Usage: ``.venv/bin/python benchmarks/bench_inventory.py [--sizes 1000,10000,100000]
[--persist 10000]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHAPES = {  # NICs -> (subscriptions, vnets per subscription, NICs per VNet)
    1_000: (10, 2, 50),
    10_000: (100, 2, 50),
    100_000: (100, 10, 100),
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_normalize(nics: int) -> dict[str, Any]:
    from shared.domain.normalize import normalize
    from shared.sample.estate import scaled_estate

    subs, vnets, per_vnet = SHAPES[nics]
    started = time.perf_counter()
    rows = scaled_estate(subs, vnets, per_vnet, seed=1)
    generate_s = time.perf_counter() - started
    text = json.dumps(rows)
    del rows
    rss_before = _rss_mib()
    started = time.perf_counter()
    parsed = json.loads(text)
    json_s = time.perf_counter() - started
    started = time.perf_counter()
    inventory = normalize(parsed)
    normalize_s = time.perf_counter() - started
    probes = [str(loc.ip) for nic in list(inventory.nics.values())[:1000]
              for loc in inventory.locate_ip(nic.ip_configurations[0].private_ip or "0.0.0.0")]
    started = time.perf_counter()
    for ip in probes:
        inventory.locate_ip(ip)
    lookup_us = (time.perf_counter() - started) / max(len(probes), 1) * 1e6
    return {
        "nics": inventory.counts()["nics"], "rows": len(parsed), "mib": len(text) / 2**20,
        "generate_s": generate_s, "json_s": json_s, "normalize_s": normalize_s,
        "lookup_us": lookup_us, "rss_before_mib": rss_before, "peak_rss_mib": _rss_mib(),
        "skipped": len(inventory.report.skipped),
    }


def measure_persist(nics: int, sample: int) -> dict[str, Any]:
    from shared.adapters.table_store import TableInventoryStore
    from shared.local.azurite import Azurite
    from shared.sample.estate import scaled_estate

    subs, vnets, per_vnet = SHAPES[nics]
    rows = scaled_estate(subs, vnets, per_vnet, seed=1)
    with Azurite() as azurite:
        with TableInventoryStore.from_connection_string(azurite.connection_string,
                                                        "BenchBatched") as store:
            started = time.perf_counter()
            report = store.save(rows, "bench-1")
            batched_s = time.perf_counter() - started
            started = time.perf_counter()
            loaded = store.load()
            load_s = time.perf_counter() - started
        with TableInventoryStore.from_connection_string(azurite.connection_string,
                                                        "BenchSingle") as store:
            started = time.perf_counter()
            for row in rows[:sample]:
                store.save([row], "bench-1")
            single_s = time.perf_counter() - started
    return {
        "rows": len(rows), "written": report.written, "transactions": sum(report.batches.values()),
        "batched_rows_s": len(rows) / batched_s, "single_rows_s": sample / single_s,
        "load_rows_s": len(loaded) / load_s, "batched_s": batched_s,
    }


def _child(kind: str, nics: int, sample: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(nics), str(sample)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--persist", type=int, default=10_000, help="NICs for the Azurite run")
    parser.add_argument("--sample", type=int, default=500, help="rows for the 1-per-txn baseline")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, nics, sample = args.child[0], int(args.child[1]), int(args.child[2])
        result = measure_normalize(nics) if kind == "normalize" else measure_persist(nics, sample)
        print(json.dumps(result))
        return

    print("Normalize (raw ARM JSON -> Inventory with lookups), one subprocess per size")
    print(f"{'NICs':>8} {'rows':>8} {'JSON MiB':>9} {'json.loads s':>13} {'normalize s':>12} "
          f"{'ratio':>6} {'us/row':>7} {'lookup us':>10} {'peak RSS MiB':>13}")
    for size in (int(s) for s in args.sizes.split(",")):
        r = _child("normalize", size, 0)
        print(f"{r['nics']:>8} {r['rows']:>8} {r['mib']:>9.1f} {r['json_s']:>13.2f} "
              f"{r['normalize_s']:>12.2f} {r['normalize_s'] / r['json_s']:>6.1f} "
              f"{r['normalize_s'] / r['rows'] * 1e6:>7.1f} {r['lookup_us']:>10.2f} "
              f"{r['peak_rss_mib']:>13.0f}")
    if args.persist:
        r = _child("persist", args.persist, args.sample)
        print(f"\nPersist to Table Storage (Azurite, in memory), {r['rows']} rows "
              f"({args.persist} NICs)")
        print(f"{'written':>8} {'txns':>6} {'batched rows/s':>15} {'1-per-txn rows/s':>17} "
              f"{'speed-up':>9} {'load rows/s':>12}")
        print(f"{r['written']:>8} {r['transactions']:>6} {r['batched_rows_s']:>15.0f} "
              f"{r['single_rows_s']:>17.0f} {r['batched_rows_s'] / r['single_rows_s']:>9.1f} "
              f"{r['load_rows_s']:>12.0f}")


if __name__ == "__main__":
    main()
