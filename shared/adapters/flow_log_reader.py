"""Raw VNet flow log blobs -> per-interval partial aggregates in DuckDB.

Blobs are ``PT1H.json`` files laid out as Network Watcher stores them (reference/azure-formats.md,
section 2): ``{"records": [{"time", "flowLogVersion", "macAddress", "flowLogResourceID",
"targetResourceID", "flowRecords": {"flows": [{"aclID", "flowGroups": [{"rule",
"flowTuples": ["ts,src,dst,sport,dport,proto,I|O,B|C|E|D,enc,pkts,bytes,pkts,bytes"]}]}]}}]}``.

Every byte is handled by DuckDB, not by Python loops: ``read_text`` + ``from_json`` (nine times
faster here than ``read_json`` on hourly blobs, and it lets a bad blob become NULL through
``TRY`` instead of failing the whole read), ``unnest`` down to the tuple strings, and
``string_split`` for the 13 fields. Each blob is read and parsed **once**: the same pipeline
reduces the tuples to the Traffic Analytics aggregation key (interval, NIC, ACL, rule, source,
destination, destination port, protocol, direction, allowed/denied - the source port is not part
of it), which is far smaller than the tuples, and carries the blob's own accounting (its records
per flowLogVersion) along.

Files are processed in batches of at most ``batch_bytes`` (smaller when that gives every worker
several) so memory stays bounded however many blobs there are, and batches run on several DuckDB
cursors at once (``workers``, by default DuckDB's ``threads``): a ``read_text`` scan is a single
pipeline, so one query at a time would keep one core busy.

Nothing bad is dropped silently. A blob that is not JSON (truncated, empty) or not of the
documented shape is skipped whole, with a reason found by re-reading that one file in Python; a
record with a flowLogVersion other than 4 is skipped with its version; a tuple that does not
parse is skipped with the first failing field. Counts per reason are kept, with examples from the
first blobs (in path order) where each reason occurred.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb

BLOB_NAME: Final = "PT1H.json"
SUPPORTED_VERSION: Final = "4"
EXAMPLES_PER_REASON: Final = 3
DEFAULT_BATCH_BYTES: Final = 256 * 1024 * 1024
#: Batches are cut smaller than ``batch_bytes`` so that every worker gets several (the last
#: batch of an uneven split would otherwise run alone), but not below this size.
MIN_BATCH_BYTES: Final = 8 * 1024 * 1024
BATCHES_PER_WORKER: Final = 4
MIN_EPOCH_MS: Final = 946_684_800_000  # 2000-01-01: anything earlier is not a flow log time
MAX_EPOCH_MS: Final = 4_102_444_800_000  # 2100-01-01
MAX_COUNTER: Final = 2**63 - 1  # packet and byte sums stop here (BIGINT)

#: from_json structure of a blob: only the fields the enricher reads (others are ignored).
#: ``flowTuples`` stays JSON text (DuckDB re-serializes it minified, ``["t1","t2"]``) and is cut
#: with string functions: a third faster than materializing a list of strings per group; a
#: non-string element makes a tuple that fails to parse and is counted, not lost.
#: ``flowLogVersion`` is kept as JSON text: ``4`` and ``"4"`` are version 4 (as they always
#: were), and a blob whose records are all one of those needs no look at its text.
_BLOB_STRUCTURE: Final = json.dumps({"records": [{
    "flowLogVersion": "JSON", "macAddress": "VARCHAR", "flowLogResourceID": "VARCHAR",
    "targetResourceID": "VARCHAR",
    "flowRecords": {"flows": [{"aclID": "VARCHAR",
                               "flowGroups": [{"rule": "VARCHAR", "flowTuples": "JSON"}]}]},
}]})

PARTIAL_TABLE: Final = "zts_flow_partial"
_PARTIAL_DDL: Final = """
CREATE TABLE IF NOT EXISTS zts_flow_partial (
    file INTEGER, reason VARCHAR, interval_ms BIGINT, mac VARCHAR, acl VARCHAR,
    rule VARCHAR, src VARCHAR, dst VARCHAR, dport INTEGER, proto INTEGER, dir VARCHAR,
    denied BOOLEAN, enc VARCHAR, flowlog VARCHAR, target VARCHAR, first_ms BIGINT,
    last_ms BIGINT, first_bd BIGINT, last_bd BIGINT, begun BIGINT, refused BIGINT,
    ended BIGINT, pkts_s2d BIGINT, bytes_s2d BIGINT, pkts_d2s BIGINT, bytes_d2s BIGINT,
    tuples BIGINT, example VARCHAR, versions VARCHAR)
"""

#: The flowLogVersion values of a blob's records, as the pattern finds them in its text: what
#: the record accounting has always counted (a record without the key is not counted; ``null``
#: counts as version "null"). The same pattern runs in DuckDB (RE2) and here (``re``), with the
#: whitespace class spelled out so that both mean the same characters.
VERSION_PATTERN: Final = r'"flowLogVersion"[\t\n\f\r ]*:[\t\n\f\r ]*"?([0-9A-Za-z.]+)'
_VERSIONS_RE: Final = re.compile(VERSION_PATTERN)
#: ``versions`` of a blob whose records are all plainly version 4: ``#`` and the record count.
_ALL_V4: Final = "#"

# One batch, one pipeline (nothing materialized but the aggregate): blobs -> records of version
# 4 -> flows -> flow groups -> tuple strings -> 13 typed fields and the first failing check ->
# the Traffic Analytics key. Rows of bad tuples keep only the file and the reason (and one
# example), so they cannot multiply groups. Every row also carries its blob's record versions
# (``versions``, computed once per blob from the parsed records: ``#<count>`` when every record
# is plainly version 4 - the usual case, no look at the text - else VERSION_PATTERN over the
# text, as they have always been counted), so the blob is never read a second time. A blob that
# yields no tuple row at all (refused by the parse, or holding no flows) is looked at again in
# Python, alone. The blob is keyed by its index (``$indexes``, path order), not its path: hashing a
# number per tuple is cheaper than hashing a long path.
_BATCH_SQL: Final = """
INSERT INTO zts_flow_partial
WITH docs AS (
    SELECT file, doc,
        CASE WHEN list_bool_and(list_transform(
                doc.records, lambda r: coalesce(r.flowLogVersion IN ('4', '"4"'), false)))
             THEN '#' || CAST(len(doc.records) AS VARCHAR)
             ELSE array_to_string(regexp_extract_all(content, $version_pattern, 1), ' ')
        END AS versions
    FROM (SELECT f.file, t.content, TRY(from_json(t.content, $structure)) AS doc
          FROM read_text($files) t
          JOIN (SELECT unnest($files) AS name, unnest($indexes) AS file) f
            ON f.name = t.filename)
), records AS (
    SELECT file, versions, unnest(doc.records) AS r FROM docs
), flows AS (
    SELECT file, versions, r.macAddress AS mac, r.flowLogResourceID AS flowlog,
           r.targetResourceID AS target, unnest(r.flowRecords.flows) AS f
    FROM records WHERE r.flowLogVersion IN ('4', '"4"')
), groups AS (
    SELECT file, versions, mac, flowlog, target, f.aclID AS acl, unnest(f.flowGroups) AS g
    FROM flows
), tuples AS (
    SELECT file, versions, mac, flowlog, target, acl, g.rule AS rule,
        unnest(CASE WHEN g.flowTuples = '[]' THEN []::VARCHAR[]
               ELSE string_split(g.flowTuples[3:-3], '","') END) AS t
    FROM groups
), split AS (
    SELECT file, versions, mac, flowlog, target, acl, rule, t, string_split(t, ',') AS p
    FROM tuples
), typed AS (
    SELECT file, versions, mac, flowlog, target, acl, rule, t, len(p) AS n,
        TRY_CAST(p[1] AS BIGINT) AS ts_raw, length(p[1]) AS ts_digits,
        p[2] AS src, p[3] AS dst,
        TRY_CAST(p[4] AS INTEGER) AS sport, TRY_CAST(p[5] AS INTEGER) AS dport,
        TRY_CAST(p[6] AS INTEGER) AS proto, p[7] AS dir, p[8] AS state, p[9] AS enc,
        CASE WHEN p[10] = '' THEN 0 ELSE TRY_CAST(p[10] AS BIGINT) END AS c1,
        CASE WHEN p[11] = '' THEN 0 ELSE TRY_CAST(p[11] AS BIGINT) END AS c2,
        CASE WHEN p[12] = '' THEN 0 ELSE TRY_CAST(p[12] AS BIGINT) END AS c3,
        CASE WHEN p[13] = '' THEN 0 ELSE TRY_CAST(p[13] AS BIGINT) END AS c4
    FROM split
), timed AS (
    SELECT *, CASE WHEN ts_digits > 11 THEN ts_raw ELSE ts_raw * 1000 END AS ts FROM typed
), checked AS (
    SELECT *, CASE
        WHEN n <> 13 THEN 'expected 13 comma-separated fields'
        WHEN ts IS NULL OR ts NOT BETWEEN $min_ms AND $max_ms THEN 'bad timestamp'
        WHEN src = '' OR dst = '' THEN 'missing address'
        WHEN sport IS NULL OR sport NOT BETWEEN 0 AND 65535
             OR dport IS NULL OR dport NOT BETWEEN 0 AND 65535 THEN 'bad port'
        WHEN proto IS NULL OR proto NOT BETWEEN 0 AND 255 THEN 'bad protocol'
        WHEN dir NOT IN ('I', 'O') THEN 'bad direction (expected I or O)'
        WHEN state NOT IN ('B', 'C', 'E', 'D') THEN 'bad flow state (expected B, C, E or D)'
        WHEN c1 IS NULL OR c2 IS NULL OR c3 IS NULL OR c4 IS NULL
             OR c1 < 0 OR c2 < 0 OR c3 < 0 OR c4 < 0 THEN 'bad counters'
    END AS reason
    FROM timed
), keyed AS (
    SELECT file, versions, reason, t, state, enc, flowlog, target, c1, c2, c3, c4, ts,
        CASE WHEN reason IS NULL THEN ts // $interval_ms * $interval_ms END AS interval_ms,
        CASE WHEN reason IS NULL THEN mac END AS mac,
        CASE WHEN reason IS NULL THEN acl END AS acl,
        CASE WHEN reason IS NULL THEN rule END AS rule,
        CASE WHEN reason IS NULL THEN src END AS src,
        CASE WHEN reason IS NULL THEN dst END AS dst,
        CASE WHEN reason IS NULL THEN dport END AS dport,
        CASE WHEN reason IS NULL THEN proto END AS proto,
        CASE WHEN reason IS NULL THEN dir END AS dir,
        CASE WHEN reason IS NULL THEN state = 'D' END AS denied,
        -- plain values rather than FILTERed aggregates: cheaper per tuple, the same sums
        CASE WHEN state IN ('B', 'D') THEN ts END AS opened_ts,
        CASE WHEN state = 'B' THEN 1 ELSE 0 END AS is_b,
        CASE WHEN state = 'D' THEN 1 ELSE 0 END AS is_d,
        CASE WHEN state = 'E' THEN 1 ELSE 0 END AS is_e
    FROM checked
)
SELECT file, reason, interval_ms, mac, acl, rule, src, dst, dport, proto, dir, denied,
    min(enc), min(flowlog), min(target), min(ts), max(ts),
    min(opened_ts), max(opened_ts), sum(is_b), sum(is_d), sum(is_e),
    -- counter sums are kept at the largest BIGINT rather than failing the read (as the
    -- native scanner does); the ingest notes how many flows reached it
    least(sum(c1), $max_counter), least(sum(c2), $max_counter), least(sum(c3), $max_counter),
    least(sum(c4), $max_counter), count(*),
    min(t) FILTER (WHERE reason IS NOT NULL), any_value(versions)
FROM keyed
GROUP BY file, reason, interval_ms, mac, acl, rule, src, dst, dport, proto, dir, denied
"""

# Once every batch is in: per blob (its index in path order) and reason, the tuples read (NULL
# reason: the good ones), the smallest offending tuple, and the blob's record versions. A row or
# two per blob, whatever the volume.
_ACCOUNT_SQL: Final = """
SELECT file, coalesce(reason, ''), sum(tuples), min(example), any_value(versions)
FROM zts_flow_partial GROUP BY file, reason ORDER BY file, reason
"""


@dataclass
class Skips:
    """Counts per reason, with a few examples (file, and the offending text if short)."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, count: int, example: str) -> None:
        self.counts[reason] += count
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(example)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {reason: {"count": self.counts[reason], "examples": self.examples.get(reason, [])}
                for reason in sorted(self.counts)}


@dataclass
class BlobReport:
    """What reading the blobs found: counts read and skipped at each level, with reasons."""

    blobs_found: int = 0
    bytes_read: int = 0
    records_read: int = 0
    tuples_read: int = 0
    blobs_skipped: Skips = field(default_factory=Skips)
    records_skipped: Skips = field(default_factory=Skips)
    tuples_skipped: Skips = field(default_factory=Skips)

    @property
    def clean(self) -> bool:
        return not (self.blobs_skipped.total or self.records_skipped.total
                    or self.tuples_skipped.total)

    def as_dict(self) -> dict[str, Any]:
        return {
            "blobs": {"found": self.blobs_found,
                      "read": self.blobs_found - self.blobs_skipped.total,
                      "skipped": self.blobs_skipped.total,
                      "reasons": self.blobs_skipped.as_dict()},
            "records": {"read": self.records_read, "skipped": self.records_skipped.total,
                        "reasons": self.records_skipped.as_dict()},
            "tuples": {"read": self.tuples_read, "skipped": self.tuples_skipped.total,
                       "reasons": self.tuples_skipped.as_dict()},
        }


def list_blobs(root: Path) -> list[Path]:
    """``PT1H.json`` files under ``root`` (any depth, symbolic links to folders not followed),
    in path order."""
    found: list[Path] = []
    pending = [str(root)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.name == BLOB_NAME:
                    found.append(Path(entry.path))
    found.sort()
    return found


def _index_batches(blobs: list[tuple[int, tuple[Path, int]]],
                   batch_bytes: int) -> list[list[tuple[int, Path]]]:
    """(index, path) batches of at most ``batch_bytes`` (a larger blob is a batch alone)."""
    out: list[list[tuple[int, Path]]] = []
    current: list[tuple[int, Path]] = []
    size = 0
    for index, (path, length) in blobs:
        if current and size + length > batch_bytes:
            out.append(current)
            current, size = [], 0
        current.append((index, path))
        size += length
    if current:
        out.append(current)
    return out


class FlowLogReader:
    """Reads blobs into the ``zts_flow_partial`` table of a DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, interval_minutes: int = 10,
                 batch_bytes: int = DEFAULT_BATCH_BYTES, workers: int | None = None) -> None:
        if interval_minutes not in (10, 60):
            raise ValueError("Traffic Analytics processes flows every 10 or 60 minutes")
        self.con = con
        self.interval_ms = interval_minutes * 60_000
        self.batch_bytes = batch_bytes
        if workers is None:
            (threads,), = con.execute("SELECT current_setting('threads')").fetchall()
            workers = int(threads)
        self.workers = max(1, workers)

    def read(self, root: Path) -> BlobReport:
        """Read every blob under ``root``; raises FileNotFoundError if ``root`` is missing."""
        if not root.is_dir():
            raise FileNotFoundError(f"flow log folder {root} does not exist")
        blobs = list_blobs(root)
        report = BlobReport(blobs_found=len(blobs))
        self.read_some(root, blobs, range(len(blobs)), report)
        return report

    def read_some(self, root: Path, blobs: Sequence[Path], indexes: Sequence[int],
                  report: BlobReport) -> None:
        """Read the blobs at ``indexes`` of ``blobs`` (every blob under ``root``, in path order:
        an index is the ``file`` of its rows) into the partial table, and add what they held
        to ``report`` (the caller has counted ``blobs_found``)."""
        self.con.execute(_PARTIAL_DDL)
        chosen = [(index, (blobs[index], _size(blobs[index]))) for index in indexes]
        size = sum(length for _, (_, length) in chosen)
        report.bytes_read += size
        share = size // (self.workers * BATCHES_PER_WORKER)
        planned = _index_batches(chosen, min(self.batch_bytes, max(MIN_BATCH_BYTES, share)))
        if len(planned) == 1 or self.workers == 1:
            for batch in planned:
                self._batch(self.con, batch)
        else:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                for done in [pool.submit(self._batch_on_cursor, batch) for batch in planned]:
                    done.result()
        self._account([(index, path) for index, (path, _) in chosen], root, report)

    def _batch_on_cursor(self, batch: list[tuple[int, Path]]) -> None:
        cursor = self.con.cursor()  # a connection of its own to the same database
        try:
            self._batch(cursor, batch)
        finally:
            cursor.close()

    def _batch(self, con: duckdb.DuckDBPyConnection, batch: list[tuple[int, Path]]) -> None:
        """The blobs of ``batch`` (their index in path order is the ``file`` column of the
        partial table)."""
        con.execute("SET enable_progress_bar = false")
        con.execute(_BATCH_SQL, {
            "structure": _BLOB_STRUCTURE, "files": [str(path) for _, path in batch],
            "indexes": [index for index, _ in batch],
            "version_pattern": VERSION_PATTERN, "min_ms": MIN_EPOCH_MS, "max_ms": MAX_EPOCH_MS,
            "interval_ms": self.interval_ms, "max_counter": MAX_COUNTER})

    def _account(self, chosen: list[tuple[int, Path]], root: Path, report: BlobReport) -> None:
        """Counts and examples, blob by blob in path order (whatever the batches were)."""
        found: dict[int, list[tuple[str, int, str | None, str | None]]] = {}
        for file, reason, count, example, versions in self.con.execute(_ACCOUNT_SQL).fetchall():
            found.setdefault(int(file), []).append((str(reason), int(count), example, versions))
        for index, path in chosen:
            name = str(path)
            rows = found.get(index)
            if rows is None:
                # no tuple came out: a blob the parse refused, or one that holds no flows
                problem, listed = _diagnose(path)
                if problem is not _FINE:
                    report.blobs_skipped.add(problem, 1, _relative(name, root))
                    continue
                counts = Counter(listed)
            else:
                counts = _version_counts(rows[0][3])
            report.records_read += sum(counts.values())
            for version, count in sorted(counts.items()):
                if version != SUPPORTED_VERSION:
                    report.records_skipped.add(
                        f"unsupported flowLogVersion {version} (expected 4)", count,
                        _relative(name, root))
            for reason, count, example, _ in rows or ():
                report.tuples_read += count
                if reason:
                    report.tuples_skipped.add(reason, count,
                                              f"{_relative(name, root)}: {str(example)[:120]}")


def _size(path: Path) -> int:
    """The blob's size for planning batches (0 when it cannot be read: the read reports it)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _version_counts(versions: str | None) -> Counter[str]:
    """The ``versions`` column back to counts per version (see ``_BATCH_SQL``)."""
    if not versions:
        return Counter()
    if versions.startswith(_ALL_V4):
        return Counter({SUPPORTED_VERSION: int(versions[len(_ALL_V4):])})
    return Counter(versions.split())


def _relative(name: str, root: Path) -> str:
    try:
        return str(Path(name).relative_to(root))
    except ValueError:
        return name


_FINE: Final = "fine"


def _diagnose(path: Path) -> tuple[str, list[str]]:
    """Why DuckDB could not read this blob: re-read that one file in Python for the reason
    (:data:`_FINE` when Python finds nothing wrong, e.g. records that hold no flows), with the
    flowLogVersion values its text holds (:data:`VERSION_PATTERN`) for the record accounting."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return f"unreadable: {type(err).__name__}", []
    if not text.strip():
        return "empty blob", []
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        if not text.rstrip().endswith("}"):
            return "not valid JSON: truncated (the document does not end)", []
        return f"not valid JSON: {err.msg}", []
    return _shape_problem(document) or _FINE, _VERSIONS_RE.findall(text)


def _shape_problem(document: Any) -> str | None:
    if not isinstance(document, dict) or not isinstance(document.get("records"), list):
        return 'not a flow log blob: expected {"records": [...]}'
    for i, record in enumerate(document["records"]):
        if not isinstance(record, dict):
            return f"records[{i}] is not an object"
        flows = (record.get("flowRecords") or {}).get("flows") if isinstance(
            record.get("flowRecords"), dict) else None
        if "flowRecords" in record and not isinstance(flows, list):
            return f"records[{i}].flowRecords.flows is not a list"
        for j, flow in enumerate(flows or []):
            groups = flow.get("flowGroups") if isinstance(flow, dict) else None
            if not isinstance(groups, list):
                return f"records[{i}].flowRecords.flows[{j}].flowGroups is not a list"
            for k, group in enumerate(groups):
                tuples = group.get("flowTuples") if isinstance(group, dict) else None
                if not isinstance(tuples, list) or not all(isinstance(t, str) for t in tuples):
                    return (f"records[{i}].flowRecords.flows[{j}].flowGroups[{k}].flowTuples "
                            "is not a list of strings")
    return None
