"""The native flow-log scanner against the SQL reader: the same tables and the same report, on
odd blobs, on the sample, and on generated blobs mutated in every way the format allows and
many it does not. The scanner only takes blobs in a canonical subset and declines the rest
(which the SQL reader then reads), so agreeing is the whole contract; these tests also pin
what it takes, that a declined blob leaves no trace, and how several scanners combine."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters import flow_scan
from shared.adapters.country_db import lookup_countries
from shared.adapters.duckdb_engine import IngestReport, LocalEngine
from shared.adapters.flow_log_reader import MAX_EPOCH_MS, MIN_EPOCH_MS
from tests.analytics.conftest import Sample, enrichment
from tests.analytics.test_reader_edge_cases import corpus

needs_native = pytest.mark.skipif(not flow_scan.available(),
                                  reason="the native scanner is not built (no C compiler)")

T = 1793610000000  # 2026-11-02T09:00:00Z
INTERVAL = 600_000
FLOWLOG = "/SUBSCRIPTIONS/X/FLOWLOGS/FL"
TARGET = "/subscriptions/x/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v"


def test_the_scanner_is_built_where_a_compiler_is() -> None:
    """CI has a C compiler: the fast path must be the one the tests and benchmarks exercise
    (setup.py builds it as optional, so a failed build would otherwise go unnoticed)."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine")
    assert flow_scan.available()


# -- the scanner alone ---------------------------------------------------------------------------


def scanner() -> Any:
    from shared.adapters import _flowscan

    return _flowscan.Scanner(interval_ms=INTERVAL, min_ms=MIN_EPOCH_MS, max_ms=MAX_EPOCH_MS)


def tup(offset_s: int = 1, src: str = "10.10.1.4", dst: str = "10.10.2.4", dport: int = 445,
        state: str = "B", counters: str = "0,0,0,0") -> str:
    return f"{T + offset_s * 1000},{src},{dst},50001,{dport},6,O,{state},NX,{counters}"


def blob(tuples: list[str], *, mac: str = "000D3A000001", version: Any = 4,
         rule: str = "DefaultRule_AllowVnetOutBound") -> bytes:
    return json.dumps({"records": [{
        "time": "2026-11-02T09:00:59.0000000Z", "flowLogVersion": version, "macAddress": mac,
        "category": "FlowLogFlowEvent", "flowLogResourceID": FLOWLOG,
        "targetResourceID": TARGET, "operationName": "FlowLogFlowEvent",
        "flowRecords": {"flows": [{"aclID": "acl-1", "flowGroups": [
            {"rule": rule, "flowTuples": tuples}]}]}}]}).encode()


def reason(code: int) -> str:
    from shared.adapters import _flowscan

    return _flowscan.DECLINE_REASONS[code]


@needs_native
@pytest.mark.parametrize(("text", "expected"), [
    (blob([tup()]), "taken"),
    (blob([tup(), tup(2, state="E", counters="1,100,2,200")]), "taken"),
    (blob([tup(src="2001:db8::1")]), "taken"),  # an address problem the scanner counts
    (blob([tup(dst="10.10.1.4.7")]), "taken"),  # 'bad address', as the SQL says
    (blob([tup(src="10.010.1.4")]), "a dotted address with leading zeros"),
    (blob([tup(), "1,2,3"]), "a tuple the SQL reader must judge"),
    (blob([tup(dport=70000)]), "a tuple the SQL reader must judge"),
    (blob([tup(state="Q")]), "a tuple the SQL reader must judge"),
    (blob([tup(counters="1,-1,0,0")]), "a tuple the SQL reader must judge"),
    (blob([tup(src="")]), "a tuple the SQL reader must judge"),
    (blob([tup()], version=3), "a record whose flowLogVersion is not 4"),
    (blob([tup()], version="4"), "taken"),
    (blob([tup()], version=4.0), "a record whose flowLogVersion is not 4"),
    (blob([tup()], rule="r\\u00e9gle"), "an escape sequence in a string"),
    (blob([tup()], rule="r\u00e9gle"), "an escape sequence in a string"),  # json.dumps escapes
    (blob([tup()], rule="r\u00e9gle").decode("unicode_escape").encode(),
     "a byte outside printable ASCII"),
    (blob([]), "no tuples"),
    (blob([tup()])[:-3], "not JSON this scanner reads"),
    (blob([tup()]) + b" x", "not JSON this scanner reads"),
    (b"", "not the documented shape"),
    (b'{"records": {"not": "a list"}}', "not the documented shape"),
    (blob([tup()]).replace(b'"macAddress"', b'"MacAddress"'),
     "a field given twice or in another case"),
    (blob([tup()]).replace(b'"time"', b'"macAddress"'), "a field given twice or in another case"),
    (b"[" * 100 + b"]" * 100, "not the documented shape"),
    (b'{"x": ' + b"[" * 100 + b"]" * 100 + b', "records": []}', "nested too deep"),
    (blob([tup()]).replace(b'"time": "2026-11-02T09:00:59.0000000Z"', b'"time": 1.5'),
     "a number other than a plain integer"),
])
def test_what_the_scanner_takes(text: bytes, expected: str) -> None:
    assert reason(scanner().feed(text)) == expected


@needs_native
def test_texts_of_a_key_keep_their_smallest_value() -> None:
    """min() over VARCHAR, as the SQL reader aggregates: byte order, whichever record (or
    tuple) came first."""
    records = []
    for minute, (flowlog, target, enc) in enumerate([("/FL/Z", "/t/a", "X"),
                                                    ("/FL/Y", "/t/z", "NX"),
                                                    ("/FL/y", "/t/b", "NX_FALLBACK")]):
        text = tup(minute * 60).replace(",NX,", f",{enc},")
        records.append({"flowLogVersion": 4, "macAddress": "000D3A000001",
                        "flowLogResourceID": flowlog, "targetResourceID": target,
                        "flowRecords": {"flows": [{"aclID": "acl-1", "flowGroups": [
                            {"rule": "r", "flowTuples": [text]}]}]}})
    s = scanner()
    assert s.feed(json.dumps({"records": records}).encode()) == 0
    [row] = flows_of(s.flows(), s.strings())
    names = s.flows().columns()
    got = dict(zip(names, row, strict=True))
    assert (got["flowlog"], got["target"], got["enc"]) == ("/FL/Y", "/t/a", "NX")
    assert got["tuples"] == 3


@needs_native
def test_a_declined_blob_leaves_no_trace() -> None:
    """Good tuples before a bad one are staged, never committed."""
    s = scanner()
    assert s.feed(blob([tup(), tup(2, state="E", counters="1,10,1,10")])) == 0
    before = (s.blobs, s.records, s.tuples, s.flow_count, s.address_problems())
    assert s.feed(blob([tup(3, src="2001:db8::9"), tup(4, dport=80), "bad"])) != 0
    assert (s.blobs, s.records, s.tuples, s.flow_count, s.address_problems()) == before


def flows_of(table: Any, strings: list[str]) -> list[tuple[Any, ...]]:
    """The exported flows with their texts instead of ids, sorted."""
    con = duckdb.connect()
    con.register("flows", table)
    rows = con.execute("SELECT * FROM flows").fetchall()
    names = table.columns()
    text = {"mac", "acl", "rule", "enc", "flowlog", "target"}
    out = [tuple(strings[v] if n in text else v for n, v in zip(names, row, strict=True))
           for row in rows]
    # read twice: every scan of the table gets a stream of its own
    assert sorted(con.execute("SELECT * FROM flows").fetchall()) == sorted(rows)
    return sorted(out)


@needs_native
def test_scanners_combine_by_concatenation_or_by_merge() -> None:
    same_nic = [blob([tup(1), tup(2, state="E", counters="1,1,1,1")]),
                blob([tup(3), tup(5, dport=80)])]  # the same NIC and interval in two blobs
    other_nic = [blob([tup(1)], mac="000D3A000002")]
    one = scanner()
    for text in [*same_nic, *other_nic]:
        assert one.feed(text) == 0
    expected = flows_of(one.flows(), one.strings())
    assert len(expected) == 3  # the repeated key merged within one scanner too

    a, b = scanner(), scanner()
    a.feed(same_nic[0])
    a.feed(same_nic[1])
    b.feed(other_nic[0])
    table = a.flows(b)
    assert not table.merged  # no MAC in common: rows concatenated
    assert flows_of(table, a.strings()) == expected

    a, b = scanner(), scanner()
    a.feed(same_nic[0])
    b.feed(same_nic[1])
    b.feed(other_nic[0])
    table = a.flows(b)
    assert table.merged  # a MAC in common: merged by key
    assert flows_of(table, a.strings()) == expected


@needs_native
def test_random_bytes_never_crash_the_scanner() -> None:
    """Mutations of a valid blob: each is taken or declined, never a crash or a hang; what is
    taken is checked against the SQL reader by the differential tests below."""
    rng = random.Random(5)
    base = blob([tup(i, dport=1000 + i % 7, state="BCED"[i % 4]) for i in range(40)])
    s = scanner()
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            at = rng.randrange(len(data))
            if op == 0:
                data[at] = rng.randrange(256)
            elif op == 1:
                del data[at:at + rng.randint(1, 30)]
            elif op == 2:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                data = data[:at]
        assert 0 <= s.feed(bytes(data)) < len(__import__(
            "shared.adapters._flowscan", fromlist=["x"]).DECLINE_REASONS)


# -- the scanner against the SQL reader ----------------------------------------------------------


def ingest(sample: Sample, root: Path, native: bool) -> tuple[IngestReport, dict[str, Any]]:
    with LocalEngine(native=native) as engine:
        report = engine.ingest_flow_logs(root, enrichment(sample), lookup_countries)
        tables = {t: engine.con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall()
                  for t in ("NTANetAnalytics", "NTAIpDetails")}
    return report, tables


def same_answers(sample: Sample, root: Path) -> IngestReport:
    native_report, native_tables = ingest(sample, root, native=True)
    sql_report, sql_tables = ingest(sample, root, native=False)
    assert native_tables == sql_tables
    ours, theirs = native_report.as_dict(), sql_report.as_dict()
    ours.pop("reader")
    theirs.pop("reader")
    assert ours == theirs
    return native_report


@needs_native
def test_odd_blobs_give_the_sql_readers_answers(sample: Sample, tmp_path: Path) -> None:
    corpus(tmp_path)
    report = same_answers(sample, tmp_path)
    assert report.reader["native_blobs"] == 3  # h, i and n are canonical; the rest declined
    assert report.reader["sql_blobs"] == 13


@needs_native
def test_the_sample_is_read_natively_with_the_sql_readers_answers(sample: Sample) -> None:
    report = same_answers(sample, sample.flow_dir)
    assert report.reader["sql_blobs"] == 0
    assert report.reader["native_blobs"] == report.as_dict()["blobs"]["found"] > 0


def record(rng: random.Random, mac: str, minute: int) -> dict[str, Any]:
    """A record of few addresses and ports, so that keys repeat across records and blobs."""
    addresses = ["10.10.1.4", "198.51.100.7"] + (["10.10.2.4"] if rng.random() < 0.3 else [])
    groups = []
    for rule in rng.sample(["DefaultRule_AllowVnetOutBound", "UserRule_app", "deny-all"],
                           rng.randint(1, 2)):
        tuples = []
        for _ in range(rng.randint(0, 5)):
            state = rng.choice("BCED")
            counters = "0,0,0,0" if state in "BD" and rng.random() < 0.5 else (
                ",,," if state in "BD" else
                f"{rng.randint(0, 9)},{rng.randint(0, 9999)},{rng.randint(0, 9)},"
                f"{rng.randint(0, 9999)}")
            tuples.append(f"{T + minute * 60_000 + rng.randint(0, 59_999)},"
                          f"{rng.choice(addresses)},{rng.choice(addresses)},"
                          f"{rng.randint(1024, 65535)},{rng.choice([443, 443, 1433])},"
                          f"6,{rng.choice('IO')},{state},"
                          f"{rng.choice(['NX', 'X', 'NX_LOCAL_DST', 'ODD'])},{counters}")
        groups.append({"rule": rule, "flowTuples": tuples})
    return {"time": "2026-11-02T09:00:00.0000000Z", "flowLogVersion": 4, "macAddress": mac,
            "flowLogResourceID": rng.choice([FLOWLOG, "/FL/B", "/FL/b"]),
            "targetResourceID": rng.choice([TARGET, "/t/b", "/t/B"]),
            "flowRecords": {"flows": [{"aclID": rng.choice(["acl-1", "Unspecified"]),
                                       "flowGroups": groups}]}}


MUTATIONS = ("none", "tuple", "address", "escape", "shape", "version", "whitespace", "order",
             "truncate", "unicode", "extra", "duplicate")


def mutate(text: str, how: str, rng: random.Random) -> str:  # noqa: PLR0911, PLR0912 - one case each
    if how == "tuple":
        return text.replace(",6,", ",600,", 1)
    if how == "address":
        return text.replace("10.10.1.4,", rng.choice(["010.10.1.4,", "10.10.1.256,",
                                                      "2001:db8::4,", "host,"]), 1)
    if how == "escape":
        return text.replace("UserRule_app", "UserRule_\\u0061pp", 1)
    if how == "shape":
        return text.replace('"flowGroups"', '"flowgroups"', 1)
    if how == "version":
        return text.replace('"flowLogVersion": 4', rng.choice(['"flowLogVersion": 3',
                                                               '"flowLogVersion": "4"']), 1)
    if how == "whitespace":
        return text.replace(", ", ",\n\t ").replace(": ", " :  ")
    if how == "order":
        document = json.loads(text)
        for rec in document["records"]:
            for key in rng.sample(list(rec), len(rec)):
                rec[key] = rec.pop(key)
        return json.dumps(document)
    if how == "truncate":
        return text[:rng.randrange(len(text))]
    if how == "unicode":
        return text.replace("UserRule_app", "UserRule_\u00e4pp", 1)
    if how == "extra":
        return text.replace('"records"', '"x": [1, {"y": null}, true], "records"', 1)
    if how == "duplicate":
        return text.replace('"macAddress"', '"macAddress": "000D3A0000FF", "macAddress"', 1)
    return text


@needs_native
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), mutations=st.lists(st.sampled_from(MUTATIONS),
                                                          min_size=1, max_size=6))
def test_generated_blobs_give_the_sql_readers_answers(sample: Sample, tmp_path_factory:
                                                      pytest.TempPathFactory, seed: int,
                                                      mutations: list[str]) -> None:
    rng = random.Random(seed)
    root = tmp_path_factory.mktemp("generated")
    for i, how in enumerate(mutations):
        mac = rng.choice(["000D3A000001", "000D3A000002"])  # blobs may share a NIC and hour
        text = json.dumps({"records": [record(rng, mac, m) for m in range(rng.randint(1, 3))]})
        path = root / f"b{i:02d}" / f"macAddress={mac}" / "PT1H.json"
        path.parent.mkdir(parents=True)
        path.write_text(mutate(text, how, rng), encoding="utf-8")
    same_answers(sample, root)


@needs_native
def test_the_scanner_is_memory_safe_under_the_sanitizers() -> None:
    """A short run of tools/fuzz_flowscan.py: the scanner built with AddressSanitizer and
    UndefinedBehaviorSanitizer, fed mutated blobs; any memory error aborts it."""
    import subprocess
    import sys

    asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                          text=True, check=False).stdout.strip()
    if not shutil.which("gcc") or not Path(asan).is_file():
        pytest.skip("gcc with libasan is not on this machine")
    tool = Path(__file__).resolve().parents[2] / "tools" / "fuzz_flowscan.py"
    done = subprocess.run([sys.executable, str(tool), "--seconds", "8", "--seed", "2"],
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outcomes = json.loads(done.stdout)["outcomes"]
    assert outcomes.get("taken", 0) > 100 and len(outcomes) > 3


# -- the contract's corners (found by review) ----------------------------------------------------


@needs_native
def test_a_declined_blob_adds_no_string() -> None:
    """Untrusted input must not grow the scanner's tables without being taken."""
    s = scanner()
    assert s.feed(blob([tup()])) == 0
    kept = s.strings()
    odd = [tup(i).replace(",NX,", f",E{i},") for i in range(1000)] + ["bad"]
    assert s.feed(blob(odd)) != 0
    assert s.strings() == kept


@needs_native
def test_combining_leaves_the_scanners_as_they_were() -> None:
    a, b = scanner(), scanner()
    a.feed(blob([tup(1, state="E", counters="1,1,1,1")]))
    b.feed(blob([tup(2, state="E", counters="1,1,1,1")]))  # the same NIC and key
    first = a.flows(b)
    assert first.merged
    counts = (a.blobs, a.tuples, a.flow_count, b.blobs, b.tuples, b.flow_count)
    second = a.flows(b)
    assert flows_of(second, a.strings()) == flows_of(first, a.strings())
    assert (a.blobs, a.tuples, a.flow_count, b.blobs, b.tuples, b.flow_count) == counts
    [row] = flows_of(second, a.strings())
    assert dict(zip(first.columns(), row, strict=True))["tuples"] == 2


@needs_native
def test_a_scanner_in_use_refuses_other_calls(tmp_path: Path) -> None:
    """While one call works without the GIL, another on the same Scanner (from a thread, or
    from Python code a call runs, such as a path's __fspath__) is refused, never interleaved."""
    import threading
    import time

    s = scanner()
    big = blob([tup(i % 3000, dport=1000 + i % 50, state="E", counters="1,2,3,4")
                for i in range(400_000)])
    inside = threading.Event()

    def feed_big() -> None:
        inside.set()
        assert s.feed(big) == 0

    small = tmp_path / "PT1H.json"
    small.write_bytes(blob([tup()]))

    class SlowPath:
        """A path whose conversion starts a feed on another thread and lets it run."""

        def __fspath__(self) -> str:
            worker.start()
            inside.wait()
            time.sleep(0.02)  # the worker is inside feed(), without the GIL
            return str(small)

    worker = threading.Thread(target=feed_big)
    with pytest.raises(RuntimeError, match="one call at a time"):
        s.feed_files([SlowPath()])
    worker.join()
    assert s.blobs == 1  # the big blob, whole; the refused call changed nothing

    refused = 0
    for _ in range(5):  # __init__ while a feed runs: refused (retried if the feed won the race)
        inside.clear()
        worker = threading.Thread(target=feed_big)
        worker.start()
        inside.wait()
        time.sleep(0.005)
        try:
            s.__init__(interval_ms=INTERVAL, min_ms=MIN_EPOCH_MS,  # type: ignore[misc]
                       max_ms=MAX_EPOCH_MS)
        except RuntimeError:
            refused += 1
        worker.join()
        if refused:
            break
    assert refused


@needs_native
def test_an_arrow_column_outlives_its_batch() -> None:
    """The Arrow C data interface lets a consumer move a column out of a batch and release the
    batch first: the column must stay readable (it holds the buffers itself)."""
    import ctypes
    import gc

    class ArrowArray(ctypes.Structure):
        pass

    release_fn = ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowArray))
    ArrowArray._fields_ = [  # a self-referencing ctypes structure is declared afterwards
        ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
        ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
        ("buffers", ctypes.POINTER(ctypes.c_void_p)),
        ("children", ctypes.POINTER(ctypes.POINTER(ArrowArray))), ("dictionary", ctypes.c_void_p),
        ("release", release_fn), ("private_data", ctypes.c_void_p)]

    class Stream(ctypes.Structure):
        _fields_ = [("get_schema", ctypes.c_void_p),  # noqa: RUF012 - ctypes' own convention
                    ("get_next", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p,
                                                  ctypes.POINTER(ArrowArray))),
                    ("get_last_error", ctypes.c_void_p),
                    ("release", ctypes.CFUNCTYPE(None, ctypes.c_void_p)),
                    ("private_data", ctypes.c_void_p)]

    s = scanner()
    s.feed(blob([tup(i * 600) for i in range(12)]))  # twelve 10-minute intervals
    table = s.flows()
    capsule = table.__arrow_c_stream__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    pointer = get(capsule, b"arrow_array_stream")
    stream = Stream.from_address(pointer)
    batch = ArrowArray()
    assert stream.get_next(pointer, ctypes.byref(batch)) == 0
    column = ArrowArray.from_buffer_copy(batch.children[0].contents)  # interval_ms, moved out
    batch.children[0].contents.release = ctypes.cast(None, release_fn)
    batch.release(ctypes.byref(batch))
    stream.release(pointer)
    del capsule, table, s, stream
    gc.collect()
    values = ctypes.cast(column.buffers[1], ctypes.POINTER(ctypes.c_int64))
    got = sorted(values[i] for i in range(column.length))
    column.release(ctypes.byref(column))
    assert got == [T // INTERVAL * INTERVAL + i * INTERVAL for i in range(12)]


@needs_native
def test_counter_sums_stop_at_the_largest_bigint_on_both_paths(sample: Sample,
                                                               tmp_path: Path) -> None:
    huge = "999999999999999,999999999999999,0,0"
    path = tmp_path / "x" / "macAddress=000D3A000001" / "PT1H.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(blob([tup(i % 50, state="C", counters=huge) for i in range(9300)]))
    report = same_answers(sample, tmp_path)
    assert report.reader["native_blobs"] == 1
    assert any("2^63 - 1" in note for note in report.notes)
