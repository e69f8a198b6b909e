"""Load the alert configuration: YAML text -> :class:`AlertConfig`, or every problem at once.

Like the policy loader, it never raises on bad input and reports each problem with its dotted path
and line, so a file is fixed in one round trip:

* YAML is composed (SafeLoader) and turned into plain data here, which gives the line of every
  value, refuses duplicate keys (``safe_load`` silently keeps the last one) and bounds alias
  expansion. Unquoted ``22:00`` stays the text ``"22:00"`` (YAML 1.1 would read it as the base-60
  number 1320, which nobody means).
* The closed pydantic schema checks structure and values; an unknown key is reported with the
  keys allowed at that place, and a secret put in the file gets a hint about the setting to use.
* Checks across values: routes that use a channel which is not configured, detections that zts
  does not know (a warning: a typo would silently never match).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from shared.alerts.config import (
    KNOWN_DETECTIONS,
    AlertConfig,
    AlertConfigSpec,
    ChannelsSpec,
    EmailChannelSpec,
    RouteSpec,
)
from shared.alerts.recipients import RECIPIENTS_SETTING, parse_recipients

__all__ = ["MAX_CONFIG_CHARS", "RECIPIENTS_SETTING", "ConfigIssue", "ConfigLoad",
           "load_alert_config", "parse_recipients", "recipients_alert_config"]

MAX_CONFIG_CHARS: Final = 256 * 1024
MAX_NODES: Final = 20_000
_SECRET_HINTS: Final = {
    "webhook": "the Teams webhook URL is a secret: set ZTS_TEAMS_WEBHOOK_URL (a Key Vault "
               "reference in Azure), not the configuration file",
    "url": "the Teams webhook URL is a secret: set ZTS_TEAMS_WEBHOOK_URL (a Key Vault reference "
           "in Azure), not the configuration file",
    "sender": "the sender address comes from the ZTS_EMAIL_SENDER setting",
    "connection_string": "connection strings are settings (ZTS_ACS_CONNECTION_STRING), never "
                         "part of the configuration file",
}

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    message: str
    path: str
    line: int | None
    source: str = "<alerts config>"

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path + ': ' if self.path else ''}{self.message}"


@dataclass(frozen=True, slots=True)
class ConfigLoad:
    """The configuration (None when there is any error) and every issue in file order."""

    config: AlertConfig | None
    errors: tuple[ConfigIssue, ...] = ()
    warnings: tuple[ConfigIssue, ...] = ()

    @property
    def ok(self) -> bool:
        return self.config is not None


@dataclass
class _Issues:
    source: str
    lines: dict[Path, int] = field(default_factory=dict)
    errors: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)

    def line(self, path: Path) -> int | None:
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                return self.lines[path[:cut]]
        return None

    def error(self, message: str, path: Path = (), line: int | None = None) -> None:
        self.errors.append(ConfigIssue(message, format_path(path), line or self.line(path),
                                       self.source))

    def warning(self, message: str, path: Path = ()) -> None:
        self.warnings.append(ConfigIssue(message, format_path(path), self.line(path),
                                         self.source))

    def result(self, config: AlertConfig | None) -> ConfigLoad:
        def order(issue: ConfigIssue) -> tuple[int, str]:
            return (issue.line or 0, issue.path)

        return ConfigLoad(None if self.errors else config, tuple(sorted(self.errors, key=order)),
                          tuple(sorted(self.warnings, key=order)))


def format_path(path: Iterable[str | int]) -> str:
    """``("routes", 0, "email")`` -> ``routes[0].email``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_alert_config(text: str, source: str = "<alerts config>",
                      recipients: Sequence[str] = ()) -> ConfigLoad:
    """Check an alert configuration document; never raises on bad input.

    ``recipients`` (from :data:`RECIPIENTS_SETTING`) fill ``channels.email.to`` when the file
    configures the email channel without addresses; addresses in the file win."""
    issues = _Issues(source)
    if len(text) > MAX_CONFIG_CHARS:
        issues.error(f"the configuration is larger than {MAX_CONFIG_CHARS} characters", (), 1)
        return issues.result(None)
    data = _read_yaml(text, issues)
    if data is None:
        return issues.result(None)
    if not isinstance(data, dict):
        issues.error("the configuration must be a mapping (channels, routes, ...)", (), 1)
        return issues.result(None)
    try:
        spec = AlertConfigSpec.model_validate(data)
    except ValidationError as error:
        for problem in _without_union_noise(error.errors()):
            _schema_issue(problem, issues)
        return issues.result(None)
    email = spec.channels.email
    if recipients and email is not None and not email.to:
        addresses = _recipients(recipients, issues, ("channels", "email"))
        if addresses is None:
            return issues.result(None)
        spec = spec.model_copy(update={"channels": spec.channels.model_copy(
            update={"email": addresses})})
    _cross_checks(spec, issues)
    return issues.result(AlertConfig.from_spec(spec))


def recipients_alert_config(recipients: Sequence[str]) -> ConfigLoad:
    """The configuration used when only :data:`RECIPIENTS_SETTING` is set (no alert file):
    every finding, of every detection and severity, by email to ``recipients``, with the
    defaults of a file (24 h suppression per fingerprint, informational and low findings in the
    digest, resolution notices)."""
    issues = _Issues("app settings")
    addresses = _recipients(recipients, issues)
    if addresses is None:
        return issues.result(None)
    spec = AlertConfigSpec(channels=ChannelsSpec(email=addresses),
                           routes=[RouteSpec(name=RECIPIENTS_SETTING, email=True)])
    return issues.result(AlertConfig.from_spec(spec))


def _recipients(recipients: Sequence[str], issues: _Issues,
                where: Path = ()) -> EmailChannelSpec | None:
    """The addresses of :data:`RECIPIENTS_SETTING` as a checked email channel, or None after
    reporting each bad address."""
    try:
        return EmailChannelSpec(to=list(recipients))
    except ValidationError as error:
        for problem in error.errors():
            loc = problem.get("loc", ())
            position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
            message = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
            if position is None:
                issues.error(f"{RECIPIENTS_SETTING} lists {len(recipients)} addresses: "
                             f"{message}", where)
            else:
                issues.error(f"{RECIPIENTS_SETTING} address {recipients[position]!r}: {message}",
                             where)
        return None


# -- YAML ------------------------------------------------------------------------------------


def _read_yaml(text: str, issues: _Issues) -> Any:
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        issues.error(f"not valid YAML: {error.problem or error}", (),
                     mark.line + 1 if mark is not None else None)
        return None
    except yaml.YAMLError as error:
        issues.error(f"not valid YAML: {error}", ())
        return None
    if node is None:
        issues.error("the configuration is empty", (), 1)
        return None
    budget = [MAX_NODES]
    data = _plain(node, (), issues, budget, yaml.SafeLoader(""))
    return None if budget[0] < 0 else data


def _plain(node: yaml.Node, path: Path, issues: _Issues, budget: list[int],
           constructor: yaml.SafeLoader) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        if budget[0] == -1:
            issues.error(f"the configuration expands to more than {MAX_NODES} values "
                         "(aliases?)", path, node.start_mark.line + 1)
        return None
    issues.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _plain(key_node, path, issues, budget, constructor)
            if not isinstance(key, str | int) or isinstance(key, bool):
                issues.error(f"keys must be text, not {key!r}", path, key_node.start_mark.line + 1)
                continue
            if key in out:
                issues.error(f"duplicate key {key!r} (the first is at line "
                             f"{issues.lines.get((*path, key), '?')})", (*path, key),
                             key_node.start_mark.line + 1)
                continue
            issues.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, (*path, key), issues, budget, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*path, i), issues, budget, constructor)
                for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    if node.tag == "tag:yaml.org,2002:int" and ":" in node.value:
        return node.value  # "22:00", not the base-60 number 1320
    if node.tag == "tag:yaml.org,2002:timestamp":
        return node.value  # dates stay text; the schema says what it wants
    return constructor.construct_object(node, deep=True)


# -- schema errors ---------------------------------------------------------------------------


_BRANCH_TAGS: Final = frozenset({"bool", "str", "int", "[key]"})
_BRANCH_PREFIXES: Final = ("list[", "dict[", "function-after[", "literal[")


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in _BRANCH_TAGS or part.startswith(_BRANCH_PREFIXES))


def _stripped(loc: Iterable[Any]) -> Path:
    """The location without pydantic's union-branch tags (``bool``, ``list[...]``...)."""
    return tuple(p for p in loc if isinstance(p, str | int) and not _is_tag(p))


def _without_union_noise(problems: list[Any]) -> list[Any]:
    """Of a union's errors (``email: true`` or a list of addresses) keep the most specific one
    (``email[0]: 'bad' is not an email address``), or say once what the value may be."""
    keep: list[Any] = []
    merged: dict[Path, list[Any]] = {}
    for problem in problems:
        loc = _stripped(problem["loc"])
        tagged = any(_is_tag(p) for p in problem["loc"]) and problem["loc"][-1] != "[key]"
        deeper = any(len(_stripped(o["loc"])) > len(loc) and _stripped(o["loc"])[: len(loc)] == loc
                     for o in problems if o is not problem)
        if tagged and deeper:
            continue
        if tagged and problem["type"].endswith("_type"):
            merged.setdefault(loc, []).append(problem)
            continue
        keep.append(problem)
    for loc, group in merged.items():
        kinds = [g["type"].removesuffix("_type") for g in group]
        keep.append({"loc": loc, "type": "union_type", "input": group[0]["input"],
                     "msg": f"expected {' or '.join(kinds)}"})
    return keep


def _schema_issue(problem: Any, issues: _Issues) -> None:
    loc: Path = tuple(p for p in problem["loc"] if isinstance(p, str | int))
    kind = problem["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = _allowed_keys(loc[:-1])
        hint = next((h for word, h in _SECRET_HINTS.items() if word in key.lower()), "")
        message = f"unknown key {key!r}" + (f" (allowed here: {', '.join(allowed)})"
                                            if allowed else "")
        issues.error(message + (f"; {hint}" if hint else ""), loc)
        return
    loc = _stripped(loc)
    if kind == "missing":
        issues.error("required key is missing", loc)
    elif kind in {"literal_error", "enum"}:
        expected = problem.get("ctx", {}).get("expected", "")
        issues.error(f"{problem['input']!r} is not one of {expected}", loc)
    elif kind == "value_error":
        issues.error(str(problem["ctx"]["error"]), loc)
    elif kind.endswith("_type") or kind in {"bool_parsing", "int_parsing"}:
        issues.error(f"{problem['msg'].lower()}, got {type(problem['input']).__name__} "
                     f"{_short(problem['input'])}", loc)
    else:
        issues.error(problem["msg"], loc)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(loc: Path) -> list[str]:
    """The keys the schema allows at ``loc`` (a mapping), for the unknown-key message."""
    current: Any = AlertConfigSpec
    for part in loc:
        current = _field_type(current, part)
        if current is None:
            return []
    model = _model_in(current)
    return sorted(model.model_fields) if model is not None else []


def _field_type(current: Any, part: str | int) -> Any:
    model = _model_in(current)
    if model is not None and isinstance(part, str):
        info = model.model_fields.get(part)
        return info.annotation if info is not None else None
    for candidate in _variants(current):
        origin = get_origin(candidate)
        if origin is list and isinstance(part, int):
            return get_args(candidate)[0]
        if origin is dict and isinstance(part, str):
            return get_args(candidate)[1]
    return None


def _variants(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _variants(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [v for arg in get_args(annotation) for v in _variants(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in _variants(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


# -- checks across values --------------------------------------------------------------------


def _cross_checks(spec: AlertConfigSpec, issues: _Issues) -> None:
    email = spec.channels.email
    teams = spec.channels.teams
    if email is None and teams is None:
        issues.error("no channel is configured: add channels.email and/or channels.teams",
                     ("channels",))
    for index, route in enumerate(spec.routes):
        where: Path = ("routes", index)
        if route.email is not False and email is None:
            issues.error("the route sends email but channels.email is not configured",
                         (*where, "email"))
        elif route.email is True and email is not None and not email.to:
            issues.error("the route sends email to the default recipients but channels.email.to "
                         f"is empty: list addresses here or there, or set {RECIPIENTS_SETTING}",
                         (*where, "email"))
        if route.teams and (teams is None or not teams.enabled):
            issues.error("the route posts to Teams but channels.teams is not configured or "
                         "disabled", (*where, "teams"))
        for position, detection in enumerate(route.detections):
            if detection != "*" and detection not in KNOWN_DETECTIONS:
                issues.warning(f"detection {detection!r} is not one zts ships "
                               f"({', '.join(sorted(KNOWN_DETECTIONS))}): check the spelling",
                               (*where, "detections", position))
    for name in sorted(set(spec.suppression.detections) | set(spec.remediation)):
        if name != "*" and name not in KNOWN_DETECTIONS:
            place = "suppression.detections" if name in spec.suppression.detections \
                else "remediation"
            issues.warning(f"detection {name!r} is not one zts ships: check the spelling",
                           (*place.split("."), name))
