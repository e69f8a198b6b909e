"""Values put into KQL are escaped: round trips through duckdb-kql's parser, refusals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import duckdb
import duckdb_kql
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.analytics.kql import (
    KqlValueError,
    TableValue,
    datetime_literal,
    long_literal,
    preamble,
    string_literal,
)

PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF,
                                  blacklist_characters="\x7f", blacklist_categories=("Cs",)),
                    max_size=40)


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb_kql.connect()
    yield connection
    connection.close()


@settings(max_examples=60, deadline=None)
@given(value=PRINTABLE)
def test_string_literal_round_trips(con: duckdb.DuckDBPyConnection, value: str) -> None:
    (got,), = duckdb_kql.query(con, f"print v = {string_literal(value)}").fetchall()
    assert got == value


def test_quotes_cannot_break_out(con: duckdb.DuckDBPyConnection) -> None:
    evil = '"; NTANetAnalytics | take 1 //'
    table = TableValue((("Country", "string"),), ((evil,), ("K\\P",)))
    text = preamble([("Evil", table)]) + "Evil | count"
    (count,), = duckdb_kql.query(con, text).fetchall()
    assert count == 2
    (value,), = duckdb_kql.query(con, preamble([("Evil", table)]) +
                                 "Evil | take 1 | project Country").fetchall()
    assert value == evil


def test_control_characters_and_bad_types_are_refused() -> None:
    with pytest.raises(KqlValueError):
        string_literal("a\nb")
    with pytest.raises(KqlValueError):
        long_literal(True)
    with pytest.raises(KqlValueError):
        long_literal(2**63)
    with pytest.raises(KqlValueError):
        datetime_literal(datetime(2026, 1, 1))  # naive: whose midnight?
    with pytest.raises(KqlValueError):
        TableValue((("X", "string"),), ((1,),)).literal()
    with pytest.raises(KqlValueError):
        TableValue((("X", "dynamic"),), ()).literal()
    with pytest.raises(KqlValueError):
        preamble([("not an identifier", 1)])


def test_datetime_literal_is_utc(con: duckdb.DuckDBPyConnection) -> None:
    local = datetime(2026, 11, 2, 10, 7, 12, 345000, tzinfo=timezone(timedelta(hours=1)))
    assert datetime_literal(local) == "datetime(2026-11-02T09:07:12.3450000Z)"
    (got,), = duckdb_kql.query(con, f"print t = {datetime_literal(local)}").fetchall()
    assert got.replace(tzinfo=UTC) == local


def test_empty_table_parameter(con: duckdb.DuckDBPyConnection) -> None:
    table = TableValue((("Lo", "long"), ("Hi", "long")))
    (count,), = duckdb_kql.query(con, preamble([("Ranges", table)]) + "Ranges | count"
                                 ).fetchall()
    assert count == 0
