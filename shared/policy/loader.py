"""Load a policy file: YAML text -> checked :class:`~shared.policy.model.Policy`, or every problem.

Three passes, each collecting instead of stopping, so a user fixes a file in one round trip:

1. YAML is composed by a SafeLoader (libyaml's when present) and turned into plain data here, not
   by ``yaml.safe_load``. That lets the loader record the line of every path, refuse duplicate keys
   (``safe_load`` silently keeps the last one, which hides a rule), and bound nesting and alias
   expansion (a "billion laughs" file is an error, not an out-of-memory).
2. :mod:`shared.policy.schema` (pydantic, strict, closed) checks structure and single values.
3. Checks across values: group references, duplicate names and priorities, ICMP ports, rules that
   open to the Internet, overlapping rules.

Issues carry a stable code (see :data:`ISSUE_CODES`), a dotted path and a line. The loader never
raises for bad input; a bug is the only way out by exception.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from shared.policy import schema
from shared.policy.loader_checks import Parts, PolicyBuilder
from shared.policy.model import Policy
from shared.policy.schema import ISSUE_CODES, PolicySpec

__all__ = [
    "ISSUE_CODES",
    "MAX_DEPTH",
    "MAX_POLICY_CHARS",
    "MAX_VALUES",
    "PolicyIssue",
    "PolicyLoad",
    "load_policy",
    "load_policy_file",
    "policy_json_schema",
]

policy_json_schema = schema.policy_json_schema

MAX_POLICY_CHARS = 4 * 1024 * 1024  # a 1,000-rule policy is ~150 KB
MAX_DEPTH = 64  # real policies nest a handful of levels
MAX_VALUES = 200_000  # values built, counting every alias expansion

YamlPath = tuple[Any, ...]  # mapping keys and list indices, as in pydantic's ``loc``
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem found in a policy file. ``path`` is dotted (``rules[1].ports[0]``), ``line`` is
    1-based (None only when the file has no usable position, e.g. it cannot be read)."""

    code: str
    message: str
    path: str
    line: int | None
    source: str = "<policy>"

    @property
    def is_warning(self) -> bool:
        return ISSUE_CODES.get(self.code, "").startswith("warning")

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        subject = f"{self.path}: " if self.path else ""
        return f"{where}: {subject}{self.message} ({self.code})"


@dataclass(frozen=True, slots=True)
class PolicyLoad:
    """The outcome of loading: the policy (None when there is any error) and every issue, each
    tuple in file order."""

    policy: Policy | None
    errors: tuple[PolicyIssue, ...] = ()
    warnings: tuple[PolicyIssue, ...] = ()

    @property
    def ok(self) -> bool:
        return self.policy is not None


def load_policy(text: str, source: str = "<policy>") -> PolicyLoad:
    """Check a policy document and build the :class:`Policy`; never raises on bad input."""
    issues = _Issues(source)
    if len(text) > MAX_POLICY_CHARS:
        issues.add("ZTS-P005", f"policy is larger than {MAX_POLICY_CHARS} characters", (), 1)
        return issues.result(None)
    data = _read_yaml(text, issues)
    if data is None:
        return issues.result(None)
    spec = _validate(data, issues)
    parts = Parts.of(spec) if spec is not None else Parts.salvage(data)
    policy = PolicyBuilder(parts, issues).build()
    return issues.result(policy if not issues.has_errors() else None)


def load_policy_file(path: Path) -> PolicyLoad:
    """Read and load a policy file; an unreadable file is an issue (ZTS-P001), not an exception."""
    issues = _Issues(str(path))
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_POLICY_CHARS * 4 + 1)
        text = raw.decode("utf-8-sig")
    except OSError as err:
        issues.add("ZTS-P001", f"cannot read the policy file: {err.strerror or err}", (), None)
        return issues.result(None)
    except UnicodeDecodeError as err:
        issues.add("ZTS-P001", f"the policy file is not UTF-8 text ({err.reason})", (), None)
        return issues.result(None)
    return load_policy(text, str(path))


# -- issues -----------------------------------------------------------------------------------


def format_path(path: Iterable[Any]) -> str:
    """``("rules", 1, "ports", 0)`` -> ``rules[1].ports[0]``; odd keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY_RE.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


class _Issues:
    """Collects issues, mapping each path to a line through the YAML line table."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[YamlPath, int] = {}
        self.columns: dict[YamlPath, int] = {}  # orders issues on one line (flow style)
        self.unreadable: set[YamlPath] = set()  # YAML problems; no further issue under these
        self._items: list[tuple[tuple[int, int], PolicyIssue]] = []

    def place(self, path: YamlPath, line: int, column: int) -> None:
        self.lines[path] = line
        self.columns[path] = column

    def _known(self, path: YamlPath) -> YamlPath | None:
        """``path``, or its nearest ancestor written in the file (a missing key is reported
        where its parent is)."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return path[:end]
        return None

    def line_for(self, path: YamlPath) -> int | None:
        known = self._known(path)
        return None if known is None else self.lines[known]

    def knows(self, path: YamlPath) -> bool:
        """Whether ``path`` itself is written in the file (not just an ancestor)."""
        return path in self.lines

    def add(self, code: str, message: str, path: YamlPath, line: int | None = -1) -> None:
        """Record an issue; ``line=-1`` (the default) looks the line up from ``path``."""
        if code not in ISSUE_CODES:
            raise ValueError(f"undocumented issue code {code}")
        known = self._known(path)
        where = (None if known is None else self.lines[known]) if line == -1 else line
        column = self.columns.get(known, 0) if known is not None and line == -1 else 0
        order = (where if where is not None else 1 << 60, column)
        self._items.append((order, PolicyIssue(code, message, format_path(path), where,
                                               self.source)))

    def has_errors(self) -> bool:
        return any(not issue.is_warning for _, issue in self._items)

    def result(self, policy: Policy | None) -> PolicyLoad:
        """Issues in file order (line, then column), so the first one is the first to fix."""
        ordered = [issue for _, issue in sorted(self._items, key=lambda item: item[0])]
        return PolicyLoad(
            policy,
            tuple(i for i in ordered if not i.is_warning),
            tuple(i for i in ordered if i.is_warning),
        )


# -- pass 1: YAML -----------------------------------------------------------------------------


class _Abort(Exception):
    def __init__(self, message: str, path: YamlPath, line: int | None = -1) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line


YamlLoader = yaml.SafeLoader | yaml.CSafeLoader
FAST_LOADER: type[yaml.CSafeLoader] | None = getattr(yaml, "CSafeLoader", None)
"""libyaml's loader, or None to use the pure-Python one (tests exercise both)."""


def _new_loader(text: str) -> YamlLoader:
    """libyaml's SafeLoader when available (30x faster on a 1,000-rule policy), after a flat pass
    over its events proves the nesting shallow: its composer recurses in C, where a hostile file
    nested a million deep would overflow the stack instead of raising RecursionError."""
    fast = FAST_LOADER
    if fast is None:
        return yaml.SafeLoader(text)
    scanner = fast(text)
    try:
        depth = 0
        while scanner.check_event():
            event = scanner.get_event()
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    raise _Abort(f"the document nests deeper than {MAX_DEPTH} levels", (),
                                 None if mark is None else mark.line + 1)
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
    finally:
        scanner.dispose()
    loader: YamlLoader = fast(text)
    return loader


class _NodeReader:
    """Turns the composed YAML node tree into plain data, recording the line of every path and
    refusing what ``yaml.safe_load`` silently accepts (a duplicate key, which would hide a rule;
    unbounded alias expansion). Scalars still go through the SafeLoader's constructor, so values
    mean exactly what they mean to ``yaml.safe_load``."""

    def __init__(self, loader: YamlLoader, issues: _Issues) -> None:
        self.loader = loader
        self.issues = issues
        self.built = 0

    def build(self) -> Any:
        node = self.loader.get_single_node()
        if node is None:
            return None
        self.issues.place((), node.start_mark.line + 1, node.start_mark.column)
        return self._value(node, (), 0)

    def _value(self, node: yaml.Node, path: YamlPath, depth: int) -> Any:
        self.built += 1
        if self.built > MAX_VALUES:
            raise _Abort(f"the document expands to more than {MAX_VALUES} values "
                         "(anchors and aliases?)", path)
        if depth > MAX_DEPTH:
            raise _Abort(f"the document nests deeper than {MAX_DEPTH} levels", path)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, yaml.SequenceNode) and node.tag == "tag:yaml.org,2002:seq":
            return self._sequence(node, path, depth)
        if isinstance(node, yaml.MappingNode) and node.tag == "tag:yaml.org,2002:map":
            return self._mapping(node, path, depth)
        self._problem("ZTS-P002", f"unsupported YAML tag {node.tag!r}", path, node)
        return None

    def _scalar(self, node: yaml.ScalarNode, path: YamlPath) -> Any:
        try:
            return self.loader.construct_object(node)
        except yaml.constructor.ConstructorError as err:
            self._problem("ZTS-P002", f"unsupported YAML value: {err.problem}", path, node)
        except ValueError as err:  # e.g. an integer with thousands of digits, a bad date
            self._problem("ZTS-P002", f"unreadable YAML value: {err}", path, node)
        return None

    def _sequence(self, node: yaml.SequenceNode, path: YamlPath, depth: int) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            self.issues.place((*path, index), item.start_mark.line + 1, item.start_mark.column)
            items.append(self._value(item, (*path, index), depth + 1))
        return items

    def _mapping(self, node: yaml.MappingNode, path: YamlPath, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._merge(value_node, path, depth, merged)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem("ZTS-P002", "mapping keys must be plain values", path, key_node)
                continue
            key = self._scalar(key_node, path)
            line = key_node.start_mark.line + 1
            if key in result:
                first = self.issues.lines.get((*path, key))
                self.issues.add(
                    "ZTS-P003", f"duplicate key {key!r} (first on line {first})", (*path, key), line
                )
                continue
            self.issues.place((*path, key), line, key_node.start_mark.column)
            result[key] = self._value(value_node, (*path, key), depth + 1)
        extra = {key: value for key, value in merged.items() if key not in result}
        return {**extra, **result}

    def _merge(self, node: yaml.Node, path: YamlPath, depth: int, into: dict[Any, Any]) -> None:
        """YAML merge keys (``<<: *base``): earlier sources win, explicit keys win over all."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in sources:
            value = self._value(source, path, depth + 1)
            if not isinstance(source, yaml.MappingNode) or not isinstance(value, dict):
                self._problem("ZTS-P002", "'<<' merges a mapping or a list of mappings", path, node)
                return
            for key, item in value.items():
                into.setdefault(key, item)

    def _problem(self, code: str, message: str, path: YamlPath, node: yaml.Node) -> None:
        self.issues.unreadable.add(path)
        self.issues.add(code, message, path, node.start_mark.line + 1)


def _read_yaml(text: str, issues: _Issues) -> dict[Any, Any] | None:
    """The document as a mapping, or None after reporting why it is not one."""
    ok, data = _parse_yaml(text, issues)
    if not ok:
        return None
    if data is None:
        issues.add("ZTS-P004", "the policy is empty", (), 1)
        return None
    if not isinstance(data, dict):
        issues.add(
            "ZTS-P004",
            f"the policy should be a mapping (apiVersion, groups, rules), got {_type_name(data)}",
            (),
        )
        return None
    return data


#: What libyaml's scanner says when a document nests deeper than it allows.
_NESTING_LIMIT: Final = "exceeded maximum nesting depth"


def _parse_yaml(text: str, issues: _Issues) -> tuple[bool, Any]:
    """(True, data) when the text is one YAML document within the limits; else the reason is
    reported and (False, None) returned."""
    try:
        loader = _new_loader(text)
        try:
            return True, _NodeReader(loader, issues).build()
        finally:
            loader.dispose()
    except _Abort as abort:  # name the top-level section; the full path can be thousands long
        issues.add("ZTS-P005", abort.message, abort.path[:1], abort.line)
    except RecursionError:
        issues.add("ZTS-P005", "the document nests too deeply to read", (), 1)
    except yaml.MarkedYAMLError as err:
        line = _mark_line(err)
        if _NESTING_LIMIT in (err.problem or ""):
            # libyaml 0.2.6+ (PyYAML 6.0.4 wheels) stops at its own depth while scanning
            # ahead, before the event pass above sees MAX_DEPTH levels: the same verdict
            issues.add("ZTS-P005", f"the document nests deeper than {MAX_DEPTH} levels", (), line)
        else:
            issues.add("ZTS-P002", _yaml_message(err, text, line), (), line)
    except yaml.reader.ReaderError as err:  # control characters
        char = err.character if isinstance(err.character, int) else ord(err.character)
        issues.add(
            "ZTS-P002",
            f"not valid YAML: unacceptable character #x{char:04x}: {err.reason}",
            (),
            text.count("\n", 0, err.position) + 1,
        )
    except yaml.YAMLError as err:
        issues.add("ZTS-P002", f"not valid YAML: {err}", (), None)
    return False, None


def _mark_line(err: yaml.MarkedYAMLError) -> int | None:
    mark = err.problem_mark or err.context_mark
    return None if mark is None else mark.line + 1


def _yaml_message(err: yaml.MarkedYAMLError, text: str, line: int | None) -> str:
    words = " ".join(part for part in (err.context, err.problem) if part)
    lines = text.splitlines()
    if line is not None and 0 < line <= len(lines) and "\t" in lines[line - 1]:
        words += " (this line has a tab: YAML indents with spaces only)"
    return f"not valid YAML: {words}"


# -- pass 2: pydantic -----------------------------------------------------------------------

_TYPE_WORDS = {
    "string_type": "should be a string",
    "int_type": "should be a whole number",
    "list_type": "should be a list",
    "dict_type": "should be a mapping",
    "model_type": "should be a mapping",
    "model_attributes_type": "should be a mapping",
}


def _validate(data: dict[Any, Any], issues: _Issues) -> PolicySpec | None:
    try:
        return PolicySpec.model_validate(data)
    except ValidationError as err:
        for error in err.errors(include_url=False):
            loc = tuple(part for part in error["loc"] if part != "[key]")
            if any(loc[: len(bad)] == bad for bad in issues.unreadable):
                continue  # already reported as unreadable YAML
            code, message = _describe(error, loc)
            issues.add(code, message, loc)
        return None


def _describe(error: Any, loc: YamlPath) -> tuple[str, str]:
    kind: str = error["type"]
    if kind.startswith("ZTS-"):
        return kind, str(error["msg"])
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1]))
        return "ZTS-P010", f"unknown key {loc[-1]!r} (allowed: {allowed})"
    if kind == "missing":
        hint = ": list the ports, or write 'ports: any'" if loc[-1] == "ports" else ""
        return "ZTS-P011", f"missing required key {loc[-1]!r}{hint}"
    value = error.get("input")
    if kind in ("literal_error", "enum"):
        return "ZTS-P013", f"invalid value {value!r}: expected {error['ctx']['expected']}"
    words = _TYPE_WORDS.get(kind, str(error["msg"]))
    hint = ""
    if kind == "string_type" and isinstance(value, bool | int | float | type(None)):
        hint = " (quote it if you meant text)"
    return "ZTS-P012", f"{words}, got {_type_name(value)} {_short(value)}{hint}"


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "list",
             dict: "mapping", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _allowed_keys(loc: YamlPath) -> list[str]:
    """The keys a mapping at ``loc`` may have, found by walking the pydantic model annotations
    (so the list cannot drift from the models)."""
    annotation: Any = PolicySpec
    for part in loc:
        annotation = _step(_unwrap(annotation), part)
    model = _unwrap(annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [info.alias or name for name, info in model.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to X."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation


def _step(annotation: Any, part: Any) -> Any:
    origin = get_origin(annotation)
    if origin is list:
        return get_args(annotation)[0]
    if origin is dict:
        return get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if (info.alias or name) == part:
                return info.annotation
    return None
