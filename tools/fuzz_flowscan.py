"""Fuzz the native flow-log scanner under AddressSanitizer and UndefinedBehaviorSanitizer.

Builds ``shared/adapters/_flowscan.c`` with ``-fsanitize=address,undefined`` (and read buffers
of exactly each blob's size plus its NUL, so that a read past the end is caught) into a temporary
folder, then re-runs itself with libasan preloaded and feeds the sanitized scanner mutations of
valid blobs (bytes flipped, cut, inserted; structure-aware edits: escapes, nesting, numbers,
huge fields, NUL bytes), through ``feed`` and ``feed_files``, merging and exporting along the
way. Any out-of-bounds read or write, use after free or undefined behaviour aborts the run with
the sanitizer's report. It prints how many inputs were taken and declined (by reason).

Usage: ``.venv/bin/python tools/fuzz_flowscan.py [--seconds 60] [--seed 1]``
(needs gcc with libasan, as Debian's gcc has).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "shared" / "adapters" / "_flowscan.c"
T = 1793610000000


def build(out: Path) -> Path:
    target = out / f"_flowscan{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(
        ["gcc", "-O1", "-g", "-std=c11", "-fPIC", "-shared", "-fno-omit-frame-pointer",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
         "-DZTS_EXACT_BUFFER",  # buffers of the blob's size: a read past its end is caught
         f"-I{sysconfig.get_paths()['include']}", str(SOURCE), "-o", str(target)],
        check=True)
    return target


def seeds(rng: random.Random) -> list[bytes]:
    out = []
    for n in (1, 3, 40):
        tuples = [f"{T + i * 997},10.0.{i % 3}.{i % 250},198.51.100.{i % 9},{1024 + i},"
                  f"{(22, 443, 1433)[i % 3]},6,{'IO'[i % 2]},{'BCED'[i % 4]},NX,"
                  f"{'' if i % 4 in (0, 3) else i},{'' if i % 4 in (0, 3) else i * 10},,"
                  for i in range(n)]
        out.append(json.dumps({"records": [{
            "time": "2026-11-02T09:00:00.0000000Z", "flowLogVersion": 4,
            "macAddress": f"000D3A00000{n % 10}", "flowLogResourceID": "/FL",
            "targetResourceID": "/t", "flowRecords": {"flows": [{"aclID": "a", "flowGroups": [
                {"rule": "r", "flowTuples": tuples}]}]}}]}).encode())
    out.append(b'{"records":[]}')
    return out


TOKENS = [b'"', b"\\", b"\\u0000", b"{", b"}", b"[", b"]", b",", b":", b"\x00", b"\xff",
          b"1e999", b"-0", b"4", b'"4"', b"null", b"true", b"[" * 80, b"9" * 40,
          b"10.010.1.1", b"::1", b" ", b"\n"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if not b:
            b += rng.choice(TOKENS)
            continue
        at = rng.randrange(len(b) + 1)
        op = rng.randrange(6)
        if op == 0 and at < len(b):
            b[at] = rng.randrange(256)
        elif op == 1:
            del b[at:at + rng.randint(1, 64)]
        elif op == 2:
            b[at:at] = rng.choice(TOKENS)
        elif op == 3:
            b = b[:at]
        elif op == 4:  # duplicate a slice (repeats keys, tuples, whole records)
            end = min(len(b), at + rng.randint(1, 400))
            b[at:at] = b[at:end]
        else:
            b[at:at] = b"x" * rng.choice((1, 70000))
    return bytes(b)


def fuzz(seconds: float, seed: int) -> None:
    # the sanitized build, on sys.path by main()
    from _flowscan import DECLINE_REASONS, Scanner  # type: ignore[import-not-found]

    rng = random.Random(seed)
    corpus = seeds(rng)
    outcomes: Counter[str] = Counter()
    work = Path(tempfile.mkdtemp(prefix="zts-fuzz-"))
    scanners = [Scanner(interval_ms=600_000, min_ms=946_684_800_000, max_ms=4_102_444_800_000)
                for _ in range(3)]
    deadline = time.monotonic() + seconds
    inputs = 0
    while time.monotonic() < deadline:
        data = mutate(rng.choice(corpus), rng)
        s = rng.choice(scanners)
        if rng.random() < 0.1:
            path = work / f"b{inputs % 50}.json"
            path.write_bytes(data)
            codes = s.feed_files([str(path), str(work / "missing.json")])
            code = codes[0]
        else:
            code = s.feed(data)
        outcomes[DECLINE_REASONS[code] if code >= 0 else "unreadable"] += 1
        if code == 0 and rng.random() < 0.05:
            corpus.append(data)
        inputs += 1
        if inputs % 2000 == 0:  # combine and export through every path
            table = scanners[0].flows(scanners[1], scanners[2])
            assert len(table) >= 0
            scanners[1].merge(scanners[2])
            scanners[2] = Scanner(interval_ms=600_000, min_ms=946_684_800_000,
                                  max_ms=4_102_444_800_000)
            s.strings()
            s.address_problems()
    print(json.dumps({"inputs": inputs, "seconds": seconds, "seed": seed,
                      "outcomes": dict(outcomes.most_common())}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, args.child)
        fuzz(args.seconds, args.seed)
        return
    with tempfile.TemporaryDirectory(prefix="zts-asan-") as out:
        build(Path(out))
        asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], check=True,
                              capture_output=True, text=True).stdout.strip()
        env = dict(os.environ, LD_PRELOAD=asan,
                   ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        result = subprocess.run([sys.executable, __file__, "--child", out, "--seconds",
                                 str(args.seconds), "--seed", str(args.seed)], env=env,
                                check=False)
        if result.returncode:
            raise SystemExit(f"the sanitized scanner failed (exit {result.returncode})")


if __name__ == "__main__":
    main()
