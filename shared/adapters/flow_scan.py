"""The native fast path of the flow-log reader: whole blobs aggregated in C, in parallel.

``_flowscan`` (a C extension, ``shared/adapters/_flowscan.c``, built by ``pip install`` when a C
compiler is there) reads a blob and aggregates its tuples by the Traffic Analytics key exactly as
the reader's SQL does (:mod:`shared.adapters.flow_log_reader`), but only for blobs in a strict,
canonical subset of the documented format: ASCII JSON without escapes, the documented shape,
flowLogVersion 4 in every record and nothing but good tuples. Everything else is *declined*
whole and read by the SQL path, which judges it (reasons, counts, examples) as it always has.
So the fast path never has to agree with the SQL on odd input, only on the input it takes; the
differential tests (tests/analytics/test_flow_scan.py) hold it to that.

Blobs are shared among worker threads by their folder (one folder per NIC MAC in the documented
layout), each thread with a Scanner of its own that parses without the GIL. Scanners whose flows
share no MAC cannot share a key, so their rows are simply concatenated; otherwise they are
merged by key (exact either way). The result reaches DuckDB through the Arrow C stream
interface of :class:`FlowTable`, scanned in place.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

try:
    from shared.adapters import _flowscan
except ImportError:  # no C compiler at install time: every blob goes through the SQL path
    _BUILT = False
else:
    _BUILT = True

#: The names the SQL reader gives to addresses it cannot use (the scanner counts the same
#: tuples under the same names: index = the scanner's problem code).
ADDRESS_PROBLEMS: Final = ("IPv6 address (the local enricher is IPv4 only)", "bad address")


def available() -> bool:
    """Whether the native scanner was built (it is optional, see setup.py)."""
    return _BUILT


@dataclass
class NativeScan:
    """What the native scanner took, and which blobs it left to the SQL path."""

    flows: Any  # _flowscan.FlowTable: the aggregated flows (an Arrow C stream)
    strings: list[str]  # the flows' mac, acl, rule, enc, flowlog and target are indexes here
    blobs: int = 0
    records: int = 0
    tuples: int = 0
    bytes: int = 0  # of the blobs taken
    merged: bool = False  # threads' flows shared a MAC and were merged by key
    declined: list[int] = field(default_factory=list)  # blob indexes, for the SQL path
    decline_reasons: Counter[str] = field(default_factory=Counter)
    address_problems: list[tuple[str, int, str]] = field(default_factory=list)


def scan(blobs: Sequence[Path], *, interval_ms: int, min_ms: int, max_ms: int,
         workers: int) -> NativeScan:
    """Read ``blobs`` with the native scanner on ``workers`` threads."""
    if not _BUILT:
        raise RuntimeError("the native flow-log scanner is not built")
    shares = _shares(blobs, max(1, workers))
    scanners = [_flowscan.Scanner(interval_ms=interval_ms, min_ms=min_ms, max_ms=max_ms)
                for _ in shares]
    declined: list[list[tuple[int, str]]] = [[] for _ in shares]

    def work(which: int) -> None:
        # one call per worker: the blobs are read and parsed without the GIL in between
        codes = scanners[which].feed_files([blobs[index] for index in shares[which]])
        for index, code in zip(shares[which], codes, strict=True):
            if code < 0:  # the SQL path reads it again and reports it
                declined[which].append((index, f"unreadable: {os.strerror(-code)}"))
            elif code:
                declined[which].append((index, _flowscan.DECLINE_REASONS[code]))

    if len(shares) == 1:
        work(0)
    else:
        with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="zts-scan") as pool:
            for done in [pool.submit(work, i) for i in range(len(shares))]:
                done.result()
    counts = [(s.blobs, s.records, s.tuples, s.bytes) for s in scanners]
    problems: dict[int, tuple[int, str]] = {}
    for scanner in scanners:
        for code, tuples, example in scanner.address_problems():
            count, smallest = problems.get(code, (0, example))
            problems[code] = (count + tuples, min(smallest, example, key=str.encode))
    first, *others = scanners
    table = first.flows(*others)
    result = NativeScan(flows=table, strings=first.strings(), merged=bool(table.merged))
    result.blobs, result.records, result.tuples, result.bytes = (
        sum(column) for column in zip(*counts, strict=True))
    result.address_problems = [(ADDRESS_PROBLEMS[code], count, example)
                               for code, (count, example) in sorted(problems.items())]
    for index, reason in sorted(item for out in declined for item in out):
        result.declined.append(index)
        result.decline_reasons[reason] += 1
    return result


def _shares(blobs: Sequence[Path], workers: int) -> list[list[int]]:
    """Blob indexes per worker: all the blobs of a folder name together (``macAddress=<MAC>``
    in the documented layout, so that workers' flows share no key), dealt out so that every
    worker gets about as many blobs."""
    folders: dict[str, list[int]] = {}
    for index, path in enumerate(blobs):
        folders.setdefault(path.parent.name, []).append(index)
    loads = [0] * min(workers, max(1, len(folders)))
    shares: list[list[int]] = [[] for _ in loads]
    for indexes in sorted(folders.values(), key=lambda idx: (-len(idx), idx[0])):
        least = loads.index(min(loads))
        shares[least].extend(indexes)
        loads[least] += len(indexes)
    return [sorted(share) for share in shares]
