"""`zts demo`: the pipeline on the embedded default, with nothing but this repo.

Today: the sample estate is normalized, persisted to a local Azurite (Table Storage) with
mark-and-sweep, read back and checked, and sample VNet flow logs are written. Later issues extend
this with the policy plan, detections and alerts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from shared.adapters.table_store import TableInventoryStore
from shared.domain.normalize import normalize
from shared.local.azurite import Azurite, AzuriteError
from shared.render.text import estate_summary, load_problems, table
from shared.sample.estate import classic_estate
from shared.sample.flowlogs import generate_flow_logs
from shared.services.inventory_sync import persist_run, subscriptions_in

DEMO_START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # fixed: the demo output is reproducible


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started


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

    flow_dir = (keep_dir or Path(".demo")) / "flowlogs"
    with _timed(timings, "flow logs"):
        manifest = generate_flow_logs(rows, flow_dir, start=DEMO_START, hours=1, seed=7)
    print(f"\nSample VNet flow logs: {len(manifest.files)} blobs, {manifest.tuple_count} flow "
          f"tuples, {len(manifest.incidents)} planted incidents, in {flow_dir}/", file=out)
    for incident in manifest.incidents:
        print(f"  - {incident.kind}: {incident.src_ip} -> {incident.dst_ip}:{incident.dst_port} "
              f"at {incident.time:%H:%M:%S}", file=out)
    if keep_dir is not None:
        (keep_dir / "estate.json").write_text(json.dumps({"data": rows}, indent=2) + "\n")
    print("\nTimings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()),
          file=out)
    if not (result.ok and round_trip):
        print("zts demo: persistence did not complete cleanly (see above)", file=err)
        return 1
    return 0
