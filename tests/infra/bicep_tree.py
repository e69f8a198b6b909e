"""Read Bicep files into plain Python structures with tree-sitter-bicep.

The Bicep CLI cannot be installed offline, so the infra tests parse the templates with
tree-sitter-bicep and assert on their structure. This module turns the syntax tree into dicts,
lists and scalars; anything that is not a literal (a call, a reference, an interpolated string, a
ternary) becomes an ``Expr`` holding its source text, which the tests compare as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

LANGUAGE = Language(tree_sitter_bicep.language())
_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


@dataclass(frozen=True)
class Expr:
    """An expression the helper does not evaluate, kept as its source text."""

    text: str


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    has_default: bool
    default: Any
    decorators: tuple[str, ...]


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str  # full type; for nested child resources, parent type + "/" + child type
    api_version: str
    existing: bool
    condition: str | None  # text inside `if (...)`, or None
    loop: str | None  # the `for ... in ...` header text, or None
    body: dict[str, Any]
    line: int
    parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Module:
    symbol: str
    path: str
    condition: str | None
    loop: str | None
    body: dict[str, Any]
    line: int


@dataclass
class BicepFile:
    path: Path
    text: str
    errors: list[tuple[int, int, str]] = field(default_factory=list)
    target_scope: str = "resourceGroup"
    params: dict[str, Param] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    exported_variables: set[str] = field(default_factory=set)
    imports: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    modules: list[Module] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    call_names: list[str] = field(default_factory=list)  # every function called, e.g. "listKeys"

    def resources_of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r.type.lower() == resource_type.lower()]

    def resource(self, symbol: str) -> Resource:
        (found,) = [r for r in self.resources if r.symbol == symbol]
        return found

    def module(self, symbol: str) -> Module:
        (found,) = [m for m in self.modules if m.symbol == symbol]
        return found


def _text(node: Node) -> str:
    return (node.text or b"").decode()


def _named(node: Node) -> list[Node]:
    return [c for c in node.named_children if c.type != "comment"]


def _object_value(node: Node) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for prop in _named(node):
        parts = _named(prop)
        if prop.type != "object_property" or parts[0].type == "resource_declaration":
            continue  # nested child resources are collected by the resource walker
        key = value(parts[0])
        result[key.text if isinstance(key, Expr) else str(key)] = value(parts[-1])
    return result


def _string_value(node: Node) -> str | Expr:
    if any(c.type == "interpolation" for c in node.children):
        return Expr(_text(node))
    out = []
    for c in node.children:
        if c.type == "string_content":
            out.append(_text(c))
        elif c.type == "escape_sequence":
            out.append(_ESCAPES.get(_text(c), _text(c)))
    return "".join(out)


_LITERALS = {
    "object": _object_value,
    "array": lambda node: [value(c) for c in _named(node)],
    "string": _string_value,
    "number": lambda node: int(_text(node)),
    "boolean": lambda node: _text(node) == "true",
    "null": lambda node: None,
}


def value(node: Node) -> Any:
    """A literal as Python data; anything else as ``Expr``."""
    convert = _LITERALS.get(node.type)
    return convert(node) if convert else Expr(_text(node))


def _unwrap(node: Node) -> tuple[str | None, str | None, Node]:
    """Strip `[for ...: if (...) {...}]` wrappers: (loop header, condition, body)."""
    loop = condition = None
    if node.type == "for_statement":
        body = node.child_by_field_name("body") or _named(node)[-1]
        loop = _text(node)[: _text(node).find(":")].lstrip("[").strip()
        node = body
    if node.type == "if_statement":
        cond = next(c for c in _named(node) if c.type == "parenthesized_expression")
        condition = _text(cond)[1:-1].strip()
        node = _named(node)[-1]
    return loop, condition, node


def _errors(node: Node, found: list[tuple[int, int, str]]) -> None:
    if node.is_error or node.is_missing:
        found.append((node.start_point[0] + 1, node.start_point[1] + 1, node.type))
    for child in node.children:
        _errors(child, found)


def _calls(node: Node, found: list[str]) -> None:
    if node.type == "call_expression":
        function = node.child_by_field_name("function") or node.children[0]
        found.append(_text(function).split(".")[-1])
    for child in node.children:
        _calls(child, found)


def _resource(node: Node, parents: tuple[Resource, ...], out: list[Resource]) -> None:
    children = node.children
    symbol = _text(next(c for c in children if c.type == "identifier"))
    type_text = value(next(c for c in children if c.type == "string"))
    type_name, _, api_version = str(type_text).partition("@")
    existing = any(c.type == "existing" for c in children)
    loop, condition, body = _unwrap(_named(node)[-1])
    if parents and "/" not in type_name:  # `resource x 'containers'` inside its parent
        parent = parents[-1]
        type_name = f"{parent.type}/{type_name}"
        api_version = api_version or parent.api_version
    resource = Resource(
        symbol=symbol,
        type=type_name,
        api_version=api_version,
        existing=existing,
        condition=condition,
        loop=loop,
        body=value(body) if body.type == "object" else {},
        line=node.start_point[0] + 1,
        parents=tuple(p.symbol for p in parents),
    )
    out.append(resource)
    if body.type == "object":
        for prop in _named(body):
            nested = _named(prop)
            if prop.type == "object_property" and nested[0].type == "resource_declaration":
                _resource(nested[0], (*parents, resource), out)


def parse_text(path: Path, text: str) -> BicepFile:
    tree = Parser(LANGUAGE).parse(text.encode())
    parsed = BicepFile(path=path, text=text)
    _errors(tree.root_node, parsed.errors)
    _calls(tree.root_node, parsed.call_names)
    decorators: list[str] = []
    for node in _named(tree.root_node):
        kind = node.type
        if kind == "decorators":
            decorators = [_text(d) for d in _named(node)]
            continue
        if kind == "target_scope_assignment":
            parsed.target_scope = str(value(_named(node)[0]))
        elif kind == "parameter_declaration":
            parts = _named(node)
            has_default = any(c.type == "=" for c in node.children)
            parsed.params[_text(parts[0])] = Param(
                name=_text(parts[0]),
                type=_text(parts[1]),
                has_default=has_default,
                default=value(parts[-1]) if has_default else None,
                decorators=tuple(decorators),
            )
        elif kind == "variable_declaration":
            parts = _named(node)
            parsed.variables[_text(parts[0])] = value(parts[-1])
            if any(d.startswith("@export(") for d in decorators):
                parsed.exported_variables.add(_text(parts[0]))
        elif kind == "import_functionality":
            parts = _named(node)
            names = tuple(_text(p) for p in parts if p.type == "identifier")
            parsed.imports.append((names, str(value(parts[-1]))))
        elif kind == "resource_declaration":
            _resource(node, (), parsed.resources)
        elif kind == "module_declaration":
            children = node.children
            loop, condition, body = _unwrap(_named(node)[-1])
            parsed.modules.append(
                Module(
                    symbol=_text(next(c for c in children if c.type == "identifier")),
                    path=str(value(next(c for c in children if c.type == "string"))),
                    condition=condition,
                    loop=loop,
                    body=value(body) if body.type == "object" else {},
                    line=node.start_point[0] + 1,
                )
            )
        elif kind == "output_declaration":
            parts = _named(node)
            parsed.outputs[_text(parts[0])] = value(parts[-1])
        decorators = []
    return parsed


@cache
def parse_file(path: Path) -> BicepFile:
    return parse_text(path, path.read_text(encoding="utf-8"))


def text_of(item: Any) -> str:
    """Source-ish text of a parsed value, for comparisons against expressions."""
    if isinstance(item, Expr):
        return item.text
    return str(item)


def module_output_references(parsed: BicepFile) -> list[tuple[str, str]]:
    """(module symbol, output name) for every `<module>[...].outputs.<name>` in the file."""
    symbols = {m.symbol for m in parsed.modules}
    found = re.findall(r"\b(\w+)(?:\[[^\]]*\])?\.outputs\.(\w+)", parsed.text)
    return [(s, o) for s, o in found if s in symbols]


_DECLARATIONS = {
    "parameter_declaration",
    "variable_declaration",
    "resource_declaration",
    "module_declaration",
    "output_declaration",
}


def _declared_names(node: Node, names: set[str]) -> None:
    if node.type in _DECLARATIONS:
        names.add(_text(next(c for c in node.named_children if c.type == "identifier")))
    elif node.type == "import_functionality":
        names.update(_text(c) for c in node.named_children if c.type == "identifier")
    for child in node.children:
        _declared_names(child, names)


def _is_reference(node: Node) -> bool:
    parent = node.parent
    if parent is None or parent.type in {"import_functionality", "type"}:
        return False
    first = parent.named_children[0] if parent.named_children else None
    if parent.type in _DECLARATIONS or parent.type == "object_property":
        return first is None or first.id != node.id  # a declared name or an object key
    if parent.type == "call_expression":
        function = parent.child_by_field_name("function")
        return function is None or function.id != node.id
    if parent.type == "resource_expression":  # a::b: only `a` is a reference
        return first is not None and first.id == node.id
    return True


def _references(node: Node, bound: frozenset[str], out: list[tuple[str, int]]) -> None:
    if node.type == "for_statement":
        header = node.named_children[0]
        names = {_text(n) for n in (header, *header.named_children)
                 if n.type in {"identifier", "loop_variable", "loop_enumerator"}}
        bound = bound | names
    elif node.type == "lambda_expression":
        *arguments, body = node.named_children
        _references(body, bound | {_text(a) for a in arguments}, out)
        return
    elif node.type == "identifier" and _is_reference(node) and _text(node) not in bound:
        out.append((_text(node), node.start_point[0] + 1))
    for child in node.children:
        _references(child, bound, out)


def undeclared_references(parsed: BicepFile) -> list[tuple[str, int]]:
    """(name, line) of identifiers used but never declared in the file (a compile error)."""
    tree = Parser(LANGUAGE).parse(parsed.text.encode())
    declared: set[str] = set()
    _declared_names(tree.root_node, declared)
    used: list[tuple[str, int]] = []
    _references(tree.root_node, frozenset(), used)
    return [(name, line) for name, line in used if name not in declared]


def _comments(node: Node, found: list[tuple[int, int]]) -> None:
    if node.type == "comment":
        found.append((node.start_byte, node.end_byte))
    for child in node.children:
        _comments(child, found)


def code_without_comments(parsed: BicepFile) -> str:
    """The file text with its comments removed (strings such as 'https://...' stay intact)."""
    source = parsed.text.encode()
    spans: list[tuple[int, int]] = []
    _comments(Parser(LANGUAGE).parse(source).root_node, spans)
    for start, end in sorted(spans, reverse=True):
        source = source[:start] + source[end:]
    return source.decode()
