"""KQL -> DuckDB SQL for the local engine, through duckdb-kql, cached in memory and on disk.

duckdb-kql parses with an ANTLR parser written in Python: a process's first translations cost
the most (the parser builds its lookahead tables: ~0.17 s for the first bundled query, 0.33 s
for all of them), later ones 0.01-0.05 s. So translations are cached:

* **Keys**: the query text and the columns of the tables it can see (zts's own ``zts_*`` tables
  left out, so the key is the same before and after an ingest). A query that declares its
  window as query parameters - what the analytics service renders for the local engine -
  translates the same for every window: its SQL is kept once and the window bound at each run
  (:func:`translate` returns the values to bind). A query whose own parameters come out of the
  translation (one that reads the clock) is never cached.
* **In memory**, per process (the last 64).
* **On disk**, so that a new process does not translate again what an earlier one did, like
  Python's ``__pycache__``: one small JSON file per translation, named by a SHA-256 of the
  duckdb-kql version, this module's format, the schema and the text, in ``ZTS_KQL_CACHE`` (a
  folder, or ``off``), by default ``$XDG_CACHE_HOME/zts/kql`` or ``~/.cache/zts/kql``. The
  cached SQL is executed, so the folder must be private: it is created ``0700``, and one that
  is not owned by this user or that others may write to is not used at all. A file that does
  not parse, or whose key does not match, is ignored and written again; a folder that cannot
  be written is simply not used.

ANTLR's Python runtime is not meant for concurrent use: every translation holds one lock.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import duckdb
import duckdb_kql

CACHE_ENV: Final = "ZTS_KQL_CACHE"
_FORMAT: Final = "zts-kql-translation/1"
_LOCK: Final = threading.Lock()
_KEPT: Final = 64
_MEMORY: OrderedDict[tuple[str, str], tuple[str, tuple[tuple[str, str], ...]]] = OrderedDict()


def schema_of(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """The tables and views a query may read, zts's own scratch tables left out."""
    return {name: columns for name, columns in duckdb_kql.engine.schema(con).items()
            if not name.rsplit(".", 1)[-1].startswith("zts_")}


def translate(query: str, schema: Mapping[str, list[str]],
              values: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The SQL for ``query`` and the parameters to execute it with: its declared query
    parameters bound from ``values``, or what the translation itself produced. Raises what
    duckdb-kql raises (syntax, unsupported construct, a declared parameter without value)."""
    schema_text = json.dumps(schema, sort_keys=True)
    key = (query, schema_text)
    with _LOCK:
        cached = _MEMORY.get(key)
        if cached is not None:
            _MEMORY.move_to_end(key)
        else:
            cached = _load(query, schema_text)
            if cached is None:
                declared = (duckdb_kql.query_parameters(query)
                            if "query_parameters" in query else [])
                if declared and not (_binding_is_ours() and all(
                        d.type == "datetime" and d.default is None for d in declared)):
                    translated = duckdb_kql.to_sql(query, schema=dict(schema),
                                                   parameters=dict(values or {}))
                    return str(translated), _checked(translated)
                translated = duckdb_kql.to_sql(query, schema=dict(schema))
                if not declared and (translated.unbound or translated.parameters):
                    return str(translated), _checked(translated)
                cached = (str(translated), tuple((d.name, d.slot) for d in declared))
                _store(query, schema_text, cached)
            _MEMORY[key] = cached
            while len(_MEMORY) > _KEPT:
                _MEMORY.popitem(last=False)
    sql, slots = cached
    missing = [name for name, _ in slots if not values or name not in values]
    if missing:
        raise duckdb_kql.KqlSchemaError(", ".join(missing),
                                        hint="declared query parameter with no value")
    return sql, {slot: _bound(values[name]) for name, slot in slots} if values else {}


def translate_all(queries: Sequence[str], schema: Mapping[str, list[str]]) -> None:
    """Fill the caches ahead of the runs; errors are left for the runs to report."""
    for query in queries:
        try:
            translate(query, schema)
        except Exception:  # noqa: S112 - only a head start: the run translates and reports
            continue


def forget() -> None:
    """Empty the in-memory cache (tests)."""
    with _LOCK:
        _MEMORY.clear()


# -- binding --------------------------------------------------------------------------------------


def _bound(value: Any) -> Any:
    """A declared datetime parameter's value as duckdb-kql binds it (naive UTC)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


@functools.cache
def _binding_is_ours() -> bool:
    """Whether binding a cached translation's slots with :func:`_bound` values is what
    duckdb-kql itself would bind (checked once per process; if not, every query with declared
    parameters is translated anew with its values - slower, never wrong)."""
    probe = datetime(2001, 2, 3, 4, 5, 6, 7, tzinfo=UTC)
    text = "declare query_parameters(P:datetime);\nprint x = P"
    try:
        translated = duckdb_kql.to_sql(text, parameters={"P": probe})
        slots = duckdb_kql.query_parameters(text)
    except Exception:
        return False
    return len(slots) == 1 and dict(translated.parameters) == {slots[0].slot: _bound(probe)}


def _checked(translated: Any) -> dict[str, Any]:
    if translated.unbound:  # as duckdb_kql.query refuses it
        raise duckdb_kql.KqlSchemaError(
            ", ".join(translated.unbound),
            hint="declared query parameter with no value and no default")
    return dict(translated.parameters)


# -- the disk cache -------------------------------------------------------------------------------


def cache_dir() -> Path | None:
    """The disk cache's folder, or None when it is off or not safe to use."""
    setting = os.environ.get(CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    if setting:
        folder = Path(setting)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = Path(base) / "zts" / "kql"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None  # someone else could put SQL there
    return folder


def _digest(query: str, schema_text: str) -> str:
    material = json.dumps([_FORMAT, duckdb_kql.__version__, schema_text, query])
    return hashlib.sha256(material.encode()).hexdigest()


def _load(query: str, schema_text: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    folder = cache_dir()
    if folder is None:
        return None
    digest = _digest(query, schema_text)
    try:
        entry = json.loads((folder / f"{digest}.json").read_text(encoding="utf-8"))
        sql, slots = entry["sql"], entry["slots"]
        if entry.get("key") != digest or not isinstance(sql, str) or not all(
                isinstance(s, list) and len(s) == 2 and all(isinstance(p, str) for p in s)
                for s in slots):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sql, tuple((name, slot) for name, slot in slots)


def _store(query: str, schema_text: str,
           translation: tuple[str, tuple[tuple[str, str], ...]]) -> None:
    folder = cache_dir()
    if folder is None:
        return
    digest = _digest(query, schema_text)
    sql, slots = translation
    body = json.dumps({"key": digest, "sql": sql, "slots": [list(s) for s in slots]})
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    except OSError:
        return
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(body)
        Path(temporary).replace(folder / f"{digest}.json")
    except OSError:
        Path(temporary).unlink(missing_ok=True)
