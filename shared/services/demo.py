"""`zts demo`: the pipeline on the embedded default, with nothing but this repo.

Today: the sample estate is normalized, persisted to a local Azurite (Table Storage) with
mark-and-sweep, read back and checked; the sample policy is compiled and its plan shown; sample
VNet flow logs are written. Later issues extend this with detections and alerts.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from shared.adapters.analytics_files import SAMPLE_CONFIG
from shared.adapters.table_store import TableInventoryStore
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.local.azurite import Azurite, AzuriteError
from shared.policy.compiler import compile_policy
from shared.policy.loader import load_policy_file
from shared.policy.model import Policy
from shared.policy.planner import build_plan
from shared.render.plan_text import plan_table
from shared.render.text import estate_summary, load_problems, table
from shared.report import write_report
from shared.report.flow_source import flows_from_flow_logs
from shared.sample.estate import ESTATE_JSON_PATH, classic_estate
from shared.sample.flowlogs import generate_flow_logs
from shared.services.analytics import analyze_flow_logs, findings_table
from shared.services.inventory_sync import persist_run, subscriptions_in

DEMO_START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
POLICY_PATH = ESTATE_JSON_PATH.parent / "policy.yaml"  # fixed: the demo output is reproducible


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started


def _traffic(rows: list[dict[str, Any]], inventory: Inventory, policy: Policy, flow_dir: Path,
             report_dir: Path, timings: dict[str, float], out: TextIO) -> None:
    """Sample flow logs -> detections -> the segmentation map report."""
    with _timed(timings, "flow logs"):
        manifest = generate_flow_logs(rows, flow_dir, start=DEMO_START, hours=1, seed=7)
    print(f"\nSample VNet flow logs: {len(manifest.files)} blobs, {manifest.tuple_count} flow "
          f"tuples, {len(manifest.incidents)} planted incidents, in {flow_dir}/", file=out)
    for incident in manifest.incidents:
        print(f"  - {incident.kind}: {incident.src_ip} -> {incident.dst_ip}:{incident.dst_port} "
              f"at {incident.time:%H:%M:%S}", file=out)
    with _timed(timings, "detections"):
        analysis = analyze_flow_logs(rows, flow_dir)  # the sample analytics configuration
    print("\nDetections on the sample flow logs (local engine: DuckDB + the kql/ detections):",
          file=out)
    print(findings_table(analysis), file=out)
    with _timed(timings, "report"):
        flows = flows_from_flow_logs(flow_dir, inventory, rows, SAMPLE_CONFIG).flows
        page = write_report(inventory, policy, flows, analysis.findings,
                            report_dir / "report.html")
    print(f"\nSegmentation map and findings report: {page}", file=out)


def run_demo(*, out: TextIO, err: TextIO, keep_dir: Path | None = None) -> int:
    timings: dict[str, float] = {}
    rows = classic_estate()
    with _timed(timings, "normalize"):
        inventory = normalize(rows)
    print("zts demo: the sample estate (Payroll, ERP, Analytics, hub) as zts sees it\n", file=out)
    print(estate_summary(inventory), file=out)
    problems = load_problems(inventory.report)
    if problems:
        print("\n" + problems, file=out)

    run_id = f"demo-{uuid.uuid4().hex[:12]}"
    try:
        with Azurite() as azurite, TableInventoryStore.from_connection_string(
            azurite.connection_string
        ) as store:
            with _timed(timings, "persist"):
                result = persist_run(rows, store, run_id, subscriptions_in(rows))
            with _timed(timings, "load back"):
                reloaded = normalize(store.load())
    except AzuriteError as error:
        print(f"zts demo: cannot run Azurite: {error}", file=err)
        return 1

    print(f"\nPersisted to Table Storage (Azurite), run {run_id}:", file=out)
    print(table(["Rows offered", "Written", "Transactions", "Not modeled", "Errors", "Swept"],
                [[result.considered, result.save.written, sum(result.save.batches.values()),
                  result.not_modeled, len(result.save.errors) + len(result.save.failed_batches),
                  result.sweep.deleted]]), file=out)
    round_trip = reloaded.counts() == inventory.counts()
    print(f"Read back from Table Storage: {'identical counts' if round_trip else 'MISMATCH'} "
          f"({sum(reloaded.counts().values())} assets)", file=out)

    policy_load = load_policy_file(POLICY_PATH)
    if policy_load.policy is None:  # the shipped policy is tested; this guards local edits
        for issue in policy_load.errors:
            print(f"error: {issue}", file=err)
        return 1
    with _timed(timings, "compile + plan"):
        plan = build_plan(compile_policy(policy_load.policy, inventory), inventory,
                          policy_load.policy.ownership)
    print(f"\nPlan for the sample policy ({POLICY_PATH.name}); nothing is applied:", file=out)
    print(plan_table(plan), file=out)

    flow_dir = (keep_dir or Path(".demo")) / "flowlogs"
    if keep_dir is None and flow_dir.exists():
        shutil.rmtree(flow_dir)  # the demo's own scratch folder: each run starts clean
    elif flow_dir.exists():
        print(f"zts demo: {flow_dir} already exists; choose an empty --out folder", file=err)
        return 2
    _traffic(rows, inventory, policy_load.policy, flow_dir, keep_dir or Path(".demo"),
             timings, out)
    if keep_dir is not None:
        (keep_dir / "estate.json").write_text(json.dumps({"data": rows}, indent=2) + "\n")
    print("\nTimings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()),
          file=out)
    if not (result.ok and round_trip):
        print("zts demo: persistence did not complete cleanly (see above)", file=err)
        return 1
    return 0
