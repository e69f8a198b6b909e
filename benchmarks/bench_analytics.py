"""Traffic analytics benchmark: raw VNet flow logs -> enriched tables -> all detections.

For each size (default 1M and 10M flow tuples) the sample generator writes blobs for a scaled
estate (4 subscriptions x 4 VNets x 40 NICs; the benign volume per hour is chosen to reach the
size), then two subprocesses run on the same blobs, each with its own peak RSS (``wait4``):

* **zts**: what ``zts analyze`` runs: the local engine (the native scanner on two threads, the
  SQL reader for any blob it declines, the enrichment in DuckDB) builds NTANetAnalytics and
  NTAIpDetails, and the five ``.kql`` detections run through duckdb-kql, blast radius included
  (reachability by policy is off: it is a per-estate cost, not per tuple). Its KQL translation
  cache is a folder of the work directory, emptied for each size: the first zts run translates
  the detections (reported in its own column), the later ones find them translated, as every
  ``zts analyze`` after the first does;
* **baseline**: plain Python - ``json.load`` each blob and loop over the tuples, aggregate by the
  same Traffic Analytics key in a dict, classify addresses with dict and bisect lookups, and
  compute the same five detections' answers in loops.

Both report how many aggregated flow rows they built, as a cross-check. Targets (issue 5):
10M tuples in under 60 s and 4 GB, and at least 10x the baseline.

The machine is shared, so each size runs zts and the baseline alternately ``--repeat`` times
(default 3), after one read of every blob so that the side measured first does not pay the
disk for both: the table shows the median run of each side, the speed-up as the ratio of the
medians and, in brackets, the lowest and highest ratio of a zts run to the baseline run next to
it; peak RSS is the highest of the runs. Every run is also printed to stderr as JSON, with the
whole process's CPU time.

Usage: ``.venv/bin/python benchmarks/bench_analytics.py [--tuples 1000000,10000000]
[--repeat 3] [--workdir DIR] [--keep] [--reuse] [--memory-limit 3GB] [--skip-baseline]``
(``--reuse`` takes the blobs a ``--keep`` run left in ``--workdir`` instead of generating them)
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

START = datetime(2026, 11, 2, 0, tzinfo=UTC)
SHAPE = (4, 4, 40)
TUPLES_PER_FLOW = 3.68  # measured on this generator: B + E (+ C every 5 minutes), both ends
HOURS = 8


def generate(target: int, out: Path) -> dict[str, Any]:
    from shared.sample.estate import scaled_estate
    from shared.sample.flowlogs import generate_flow_logs

    rows = scaled_estate(*SHAPE, seed=1)
    per_hour = max(1, int(target / TUPLES_PER_FLOW / HOURS))
    started = time.perf_counter()
    manifest = generate_flow_logs(rows, out / "flowlogs", start=START, hours=HOURS, seed=1,
                                  benign_flows_per_hour=per_hour)
    (out / "estate.json").write_text(json.dumps(rows))
    size = sum(p.stat().st_size for p in (out / "flowlogs").rglob("PT1H.json"))
    return {"tuples": manifest.tuple_count, "blobs": len(manifest.files),
            "mib": round(size / 2**20, 1), "generate_s": round(time.perf_counter() - started, 1)}


def config() -> Any:
    from ipaddress import IPv4Network

    from shared.analytics.config import AnalyticsConfig, ThreatEntry
    from shared.sample.flowlogs import PUBLIC_ENDPOINTS

    return AnalyticsConfig(
        risky_countries=("KP",),
        threats=tuple(ThreatEntry(IPv4Network(e.ip), e.threat or "Listed")
                      for e in PUBLIC_ENDPOINTS if e.threat),
        country_overrides=tuple((IPv4Network(e.ip), e.country) for e in PUBLIC_ENDPOINTS),
        expected_services=None, policy_reach=False)


def service_tags() -> Any:
    from shared.analytics.enrichment import parse_service_tags

    path = ROOT / "shared" / "sample" / "data" / "service_tags.json"
    return parse_service_tags(json.loads(path.read_text()))


# -- zts ---------------------------------------------------------------------------------------


def run_zts(work: Path, memory_limit: str) -> dict[str, Any]:
    from shared.adapters.analytics_files import load_detections
    from shared.adapters.country_db import lookup_countries
    from shared.adapters.duckdb_engine import LocalEngine
    from shared.analytics.enrichment import EnrichmentTables
    from shared.domain.normalize import normalize
    from shared.services.analytics import analyze, prepare, resolve_window

    rows = json.loads((work / "estate.json").read_text())
    inventory = normalize(rows)
    cfg = config()
    tables = EnrichmentTables.build(inventory, rows, cfg, service_tags())
    catalog, queries = load_detections()
    started = time.perf_counter()
    with LocalEngine(memory_limit=memory_limit, temp_directory=work / "spill") as engine:
        prepare(engine, catalog, queries, config=cfg, inventory=inventory)  # as zts analyze does
        ingest = engine.ingest_flow_logs(work / "flowlogs", tables, lookup_countries)
        enriched = time.perf_counter()
        window = resolve_window(engine.data_range(), None, None)
        assert window is not None
        report = analyze(engine, catalog, queries, config=cfg, window=window,
                         inventory=inventory)
        rows_built = ingest.tables["NTANetAnalytics"]
    done = time.perf_counter()
    return {"enrich_s": round(enriched - started, 2), "detect_s": round(done - enriched, 2),
            "total_s": round(done - started, 2), "tuples": ingest.blobs.tuples_read
            if ingest.blobs else 0, "nta_rows": rows_built, "findings": len(report.findings),
            "complete": report.complete}


# -- plain-Python baseline -------------------------------------------------------------------------


def run_baseline(work: Path) -> dict[str, Any]:  # noqa: PLR0912, PLR0915 - one loop nest on purpose
    from shared.analytics.enrichment import (
        EnrichmentTables,
        ip_int,
        private_ranges,
    )
    from shared.domain.normalize import normalize

    rows = json.loads((work / "estate.json").read_text())
    inventory = normalize(rows)
    cfg = config()
    tables = EnrichmentTables.build(inventory, rows, cfg, service_tags())
    hosts = {h.ip: h for h in tables.hosts}
    started = time.perf_counter()
    interval = cfg.interval_minutes * 60_000
    agg: dict[tuple[Any, ...], list[int]] = {}
    tuples = 0
    for folder, _dirs, files in os.walk(work / "flowlogs"):
        for name in files:
            if name != "PT1H.json":
                continue
            with (Path(folder) / name).open(encoding="utf-8") as handle:
                document = json.load(handle)
            for record in document["records"]:
                if record.get("flowLogVersion") != 4:
                    continue
                mac = record["macAddress"]
                for flow in record["flowRecords"]["flows"]:
                    acl = flow["aclID"]
                    for group in flow["flowGroups"]:
                        rule = group["rule"]
                        for text in group["flowTuples"]:
                            tuples += 1
                            p = text.split(",")
                            ts = int(p[0])
                            ts = ts if len(p[0]) > 11 else ts * 1000
                            state = p[7]
                            key = (ts // interval, mac, acl, rule, p[1], p[2], int(p[4]),
                                   int(p[5]), p[6], state == "D")
                            acc = agg.get(key)
                            if acc is None:
                                acc = agg[key] = [ts, ts, 0, 0, 0, 0, 0, 0, 0]
                            acc[0] = min(acc[0], ts)
                            acc[1] = max(acc[1], ts)
                            acc[2] += state == "B"
                            acc[3] += state == "D"
                            acc[4] += state == "E"
                            for i in range(4):
                                acc[5 + i] += int(p[9 + i] or 0)
    enriched_at = time.perf_counter()
    private = private_ranges()
    vnet_starts = [v.lo for v in tables.vnets]
    svc = sorted(tables.services)
    svc_starts = [s.lo for s in svc]
    threats = {t.lo: t for t in tables.threats}
    countries = {c.lo: c.country for c in tables.countries}

    def info(ip: str) -> tuple[bool, str, str | None, str | None, str]:
        host = hosts.get(ip)
        if host is not None:
            return True, host.subscription, None, None, host.vnet_id
        n = ip_int(ip)
        i = bisect.bisect_right(vnet_starts, n) - 1
        if i >= 0 and tables.vnets[i].hi >= n:
            return True, tables.vnets[i].subscription, None, None, tables.vnets[i].vnet_id
        if any(lo <= n <= hi for lo, hi in private):
            return True, "", None, None, ""
        j = bisect.bisect_right(svc_starts, n) - 1
        service = svc[j].service if j >= 0 and svc[j].hi >= n else None
        threat = threats[n].threat_type if n in threats else None
        return False, "", service, threat, countries.get(n, "")

    cache: dict[str, tuple[bool, str, str | None, str | None, str]] = {}
    risky: set[tuple[str, str]] = set()
    malicious: set[tuple[str, str]] = set()
    cross: dict[tuple[str, str], int] = defaultdict(int)
    services: dict[tuple[str, str], int] = defaultdict(int)
    edges: list[tuple[int, str, str]] = []
    for key, acc in agg.items():
        src, dst = key[4], key[5]
        s = cache.get(src) or cache.setdefault(src, info(src))
        d = cache.get(dst) or cache.setdefault(dst, info(dst))
        denied = key[9]
        if s[0] and d[0]:
            if not denied and s[1] and d[1] and s[1] != d[1]:
                cross[(src, dst)] += acc[2]
            if not denied and acc[2]:
                edges.append((acc[0], src, dst))
            continue
        public, private_ip, peer = (src, dst, s) if not s[0] else (dst, src, d)
        if peer[3] is not None:
            malicious.add((public, private_ip))
        elif peer[2] is not None:
            services[(private_ip, peer[2])] += acc[2]
        elif peer[4] in cfg.risky_countries:
            risky.add((public, private_ip))
    edges.sort()
    origins = {p for _, p in malicious | risky}
    reached = 0
    for origin in origins:
        arrival = {origin: 0}
        for when, a, b in edges:
            if a in arrival and b not in arrival and when >= arrival[a]:
                arrival[b] = when
        reached += len(arrival) - 1
    done = time.perf_counter()
    return {"enrich_s": round(enriched_at - started, 2), "detect_s": round(done - enriched_at, 2),
            "total_s": round(done - started, 2), "tuples": tuples, "aggregated": len(agg),
            "findings": len(risky) + len(malicious) + len(cross) + len(services) + len(origins)}


# -- driver ------------------------------------------------------------------------------------


def child(phase: str, work: Path, memory_limit: str) -> dict[str, Any]:
    """Run one phase in a subprocess; its own peak RSS and CPU time come from wait4 (CPU time
    of the whole process: interpreter start, estate loading and all)."""
    env = dict(os.environ, ZTS_KQL_CACHE=str(work / "kql-cache"))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--phase", phase, "--workdir", str(work),
         "--memory-limit", memory_limit], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{phase} failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024)
    result["process_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    return result


def warm_page_cache(work: Path) -> None:
    """Read every blob once, so that the side measured first does not pay the disk for both."""
    for path in (work / "flowlogs").rglob("PT1H.json"):
        path.read_bytes()


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median total time (the lower middle one for an even count), with the
    highest peak RSS of all the runs."""
    ordered = sorted(runs, key=lambda r: r["total_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    return chosen


def prepare(target: int, work: Path, reuse: bool) -> dict[str, Any]:
    made_file = work / "generated.json"
    if reuse and made_file.is_file() and (work / "flowlogs").is_dir():
        made: dict[str, Any] = json.loads(made_file.read_text())
        return made
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    made = generate(target, work)
    made_file.write_text(json.dumps(made))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuples", default="1000000,10000000",
                        help="comma-separated target tuple counts")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each side per size, alternating (default 3)")
    parser.add_argument("--workdir", type=Path, help="where to write blobs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated blobs")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse blobs a --keep run left in --workdir")
    parser.add_argument("--memory-limit", default="3GB", help="DuckDB memory_limit")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--phase", choices=("zts", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase is not None:
        work = args.workdir
        result = run_zts(work, args.memory_limit) if args.phase == "zts" else run_baseline(work)
        print(json.dumps(result))
        return
    base = args.workdir or Path(tempfile.mkdtemp(prefix="zts-bench-analytics-"))
    print("| target | tuples | blobs | MiB | zts s (enrich + detect) | zts first run s | zts "
          "tuples/s | zts peak RSS MiB | baseline s | baseline tuples/s | baseline peak RSS "
          "MiB | speed-up (lowest-highest) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for target in (int(t) for t in args.tuples.split(",")):
        work = base / f"t{target}"
        made = prepare(target, work, args.reuse)
        shutil.rmtree(work / "kql-cache", ignore_errors=True)  # the first zts run translates
        warm_page_cache(work)
        our_runs: list[dict[str, Any]] = []
        their_runs: list[dict[str, Any]] = []
        for _ in range(max(1, args.repeat)):
            our_runs.append(child("zts", work, args.memory_limit))
            if not args.skip_baseline:
                their_runs.append(child("baseline", work, args.memory_limit))
            print(json.dumps({"generated": made, "zts": our_runs[-1],
                              "baseline": their_runs[-1] if their_runs else None}),
                  file=sys.stderr, flush=True)
        ours = median_run(our_runs)
        tps = made["tuples"] / ours["total_s"]
        row = [f"{target:,}", f"{made['tuples']:,}", f"{made['blobs']:,}", made["mib"],
               f"{ours['total_s']} ({ours['enrich_s']} + {ours['detect_s']})",
               our_runs[0]["total_s"], f"{tps:,.0f}", ours["peak_rss_mib"]]
        if their_runs:
            theirs = median_run(their_runs)
            pairs = [b["total_s"] / z["total_s"] for z, b in zip(our_runs, their_runs,
                                                                  strict=True)]
            speedup = statistics.median(r["total_s"] for r in their_runs) / statistics.median(
                r["total_s"] for r in our_runs)
            row += [theirs["total_s"], f"{made['tuples'] / theirs['total_s']:,.0f}",
                    theirs["peak_rss_mib"],
                    f"{speedup:.1f}x ({min(pairs):.1f}-{max(pairs):.1f})"]
        else:
            row += ["-", "-", "-", "-"]  # no baseline
        print("| " + " | ".join(str(c) for c in row) + " |", flush=True)
        if not args.keep:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
