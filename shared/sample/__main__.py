"""Command line for the sample data: ``python -m shared.sample <command>``.

* ``write-estate [--output PATH]`` regenerates ``shared/sample/data/estate.json`` from
  :func:`shared.sample.estate.classic_estate`.
* ``write-flowlogs OUT_DIR [...]`` writes sample VNet flow log blobs for an estate file and a
  ``manifest.json`` listing the blobs, the counts and the planted incidents.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared.sample.estate import ESTATE_JSON_PATH, load_estate, write_estate
from shared.sample.flowlogs import generate_flow_logs

DEFAULT_START = "2025-03-01T09:00:00Z"


def _parse_start(text: str) -> datetime:
    start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return start if start.tzinfo else start.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.sample", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    estate = commands.add_parser("write-estate", help="regenerate the committed estate.json")
    estate.add_argument("--output", type=Path, default=ESTATE_JSON_PATH)
    flows = commands.add_parser("write-flowlogs", help="write sample VNet flow log blobs")
    flows.add_argument("out_dir", type=Path)
    flows.add_argument("--estate", type=Path, default=ESTATE_JSON_PATH)
    flows.add_argument("--start", type=_parse_start, default=_parse_start(DEFAULT_START))
    flows.add_argument("--hours", type=int, default=1)
    flows.add_argument("--seed", type=int, default=0)
    flows.add_argument("--flows-per-hour", type=int, default=1500)
    flows.add_argument("--no-incidents", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "write-estate":
        print(f"wrote {write_estate(args.output)}")
        return 0
    manifest = generate_flow_logs(
        load_estate(args.estate),
        args.out_dir,
        start=args.start,
        hours=args.hours,
        seed=args.seed,
        benign_flows_per_hour=args.flows_per_hour,
        incidents=not args.no_incidents,
    )
    manifest_path = args.out_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    print(
        f"wrote {len(manifest.files)} blobs, {manifest.tuple_count} tuples, "
        f"{len(manifest.incidents)} planted incidents; manifest: {manifest_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
