"""The analytics configuration (``zts analyze --config``): what counts as risky, malicious,
allowed and expected, and how the local enricher works.

Every key is documented in docs/analytics.md and here; an unknown key is an error that names its
location (``enrichment.contries: unknown key (line 7)``), because a misspelled key silently
ignored would turn a detection off while the output still looks clean. Validation collects every
problem at once. Paths to files (threat lists, service tags) stay strings here and are resolved
by the caller relative to the configuration file: this module does no I/O.

Keys::

    risky_countries: [KP, IR, RU]        # ISO 3166-1 alpha-2 codes (risky_region)
    malicious_ips: [203.0.113.66, 198.51.100.0/24]   # IPv4 addresses or CIDRs (malicious_flow)
    threat_lists: [threats.txt]          # files: "<ip-or-cidr>[,<threat type>[,<description>]]"
    cross_subscription:
      allowed_pairs: [{src: <subscription id>, dst: <subscription id or "*">}]
    expected_services: {<vnet name or id>: [Storage, Sql]}   # azure_service; omit to learn
    enrichment:                          # local engine (raw flow logs) only
      service_tags: ServiceTags_Public.json   # Azure service tags JSON (download format)
      countries: {198.51.100.23: KP}     # IP/CIDR -> country, before the offline database
      interval_minutes: 10               # Traffic Analytics processing interval: 10 or 60
    blast_radius:
      policy: true                       # also compute "reachable by policy" (NSG evaluator)
      policy_ports: [22, 3389, 445]      # TCP ports probed for reachability by policy
      max_policy_hosts: 2000             # above this many estate IPs, policy reach is skipped
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_network
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.policy.loader import format_path

MAX_CONFIG_CHARS: Final = 1_000_000
DEFAULT_POLICY_PORTS: Final = (22, 80, 135, 443, 445, 1433, 3306, 3389, 5432, 5985, 5986, 8080,
                               8443)  # fmt: skip
_COUNTRY: Final = re.compile(r"^[A-Z]{2}$")
_SUBSCRIPTION: Final = re.compile(r"^(\*|[0-9A-Za-z-]{1,64})$")

YamlPath = tuple[Any, ...]
Country = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _network(value: str) -> IPv4Network:
    """An IPv4 address or CIDR (host bits allowed: ``10.0.0.5/24`` means ``10.0.0.0/24``)."""
    try:
        network = ip_network(str(value).strip(), strict=False)
    except ValueError as err:
        raise ValueError(f"{value!r} is not an IP address or CIDR") from err
    if not isinstance(network, IPv4Network):
        raise ValueError(f"{value!r}: IPv6 is not supported yet (flow analytics is IPv4 only)")
    return network


def _network_text(value: str) -> str:
    _network(value)
    return value


NetworkText = Annotated[str, AfterValidator(_network_text)]


class _AllowedPair(_Strict):
    src: str
    dst: str

    @field_validator("src", "dst")
    @classmethod
    def _subscription(cls, value: str) -> str:
        if not _SUBSCRIPTION.match(value):
            raise ValueError(f"{value!r} is not a subscription id (or '*')")
        return value.lower()


class _CrossSubscription(_Strict):
    allowed_pairs: list[_AllowedPair] = []


class _Enrichment(_Strict):
    service_tags: str | None = None
    countries: dict[NetworkText, Country] = {}
    interval_minutes: Literal[10, 60] = 10


class _BlastRadius(_Strict):
    policy: bool = True
    policy_ports: list[Annotated[int, Field(ge=0, le=65535)]] = list(DEFAULT_POLICY_PORTS)
    max_policy_hosts: Annotated[int, Field(ge=0)] = 2000


class _Spec(_Strict):
    risky_countries: list[Country] = []
    malicious_ips: list[NetworkText] = []
    threat_lists: list[str] = []
    cross_subscription: _CrossSubscription = _CrossSubscription()
    expected_services: dict[str, list[str]] | None = None
    enrichment: _Enrichment = _Enrichment()
    blast_radius: _BlastRadius = _BlastRadius()


# -- the validated configuration (pure data) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThreatEntry:
    """One listed range: where it came from and what it is said to be."""

    network: IPv4Network
    threat_type: str = "Listed"
    description: str = ""
    source: str = "config"


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    """The configuration as the services use it. ``expected_services`` is None when the key is
    absent (learning mode: every Azure-service interaction is informational)."""

    risky_countries: tuple[str, ...] = ()
    threats: tuple[ThreatEntry, ...] = ()
    threat_lists: tuple[str, ...] = ()
    allowed_pairs: tuple[tuple[str, str], ...] = ()
    expected_services: Mapping[str, tuple[str, ...]] | None = None
    service_tags: str | None = None
    country_overrides: tuple[tuple[IPv4Network, str], ...] = ()
    interval_minutes: int = 10
    policy_reach: bool = True
    policy_ports: tuple[int, ...] = DEFAULT_POLICY_PORTS
    max_policy_hosts: int = 2000

    def with_threats(self, extra: tuple[ThreatEntry, ...]) -> AnalyticsConfig:
        """A copy with threat-list entries (read by the caller from ``threat_lists``) added."""
        return AnalyticsConfig(
            self.risky_countries, self.threats + extra, self.threat_lists, self.allowed_pairs,
            self.expected_services, self.service_tags, self.country_overrides,
            self.interval_minutes, self.policy_reach, self.policy_ports, self.max_policy_hosts,
        )


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem: dotted path, 1-based line (None when unknown) and message."""

    path: str
    line: int | None
    message: str
    source: str = "<config>"

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        subject = f"{self.path}: " if self.path else ""
        return f"{where}: {subject}{self.message}"


@dataclass(frozen=True, slots=True)
class ConfigLoad:
    config: AnalyticsConfig | None
    errors: tuple[ConfigIssue, ...] = field(default=())


def load_config(text: str, source: str = "<config>") -> ConfigLoad:
    """Validate a YAML configuration; never raises on bad input. An empty document is the
    default configuration (every detection on, nothing listed)."""
    if len(text) > MAX_CONFIG_CHARS:
        return ConfigLoad(None, (ConfigIssue("", 1, f"larger than {MAX_CONFIG_CHARS} characters",
                                             source),))
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        return ConfigLoad(None, (ConfigIssue("", line, f"not valid YAML: {problem}", source),))
    lines: dict[YamlPath, int] = {}
    issues: list[ConfigIssue] = []
    data = _build(root, (), lines, issues, source) if root is not None else {}
    if data is None or data == "":
        data = {}
    if not isinstance(data, dict):
        issues.append(ConfigIssue("", 1, "the configuration must be a mapping", source))
        return ConfigLoad(None, tuple(issues))
    try:
        spec = _Spec.model_validate(data)
    except ValidationError as err:
        for problem in err.errors():
            loc = tuple(problem["loc"])
            message = ("unknown key" if problem["type"] == "extra_forbidden"
                       else str(problem["msg"]).removeprefix("Value error, "))
            issues.append(ConfigIssue(format_path(loc), _line_for(loc, lines), message, source))
        spec = None
    if issues or spec is None:
        ordered = sorted(issues, key=lambda i: (i.line or 0, i.path))
        return ConfigLoad(None, tuple(ordered))
    return ConfigLoad(_config(spec))


def _build(node: yaml.Node, path: YamlPath, lines: dict[YamlPath, int],
           issues: list[ConfigIssue], source: str) -> Any:
    """Plain Python data from a composed YAML node, remembering each path's line and refusing
    duplicate keys (PyYAML would keep the last one silently)."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "<complex key>"
            if key in out:
                issues.append(ConfigIssue(format_path((*path, key)), key_node.start_mark.line + 1,
                                          "duplicate key", source))
                continue
            out[key] = _build(value_node, (*path, key), lines, issues, source)
            lines[(*path, key)] = key_node.start_mark.line + 1  # the key's line, not the value's
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), lines, issues, source)
                for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _line_for(loc: YamlPath, lines: Mapping[YamlPath, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        found = lines.get(tuple(loc[:end]))
        if found is not None:
            return found
    return None


def _config(spec: _Spec) -> AnalyticsConfig:
    return AnalyticsConfig(
        risky_countries=tuple(sorted({c.upper() for c in spec.risky_countries})),
        threats=tuple(ThreatEntry(_network(ip)) for ip in spec.malicious_ips),
        threat_lists=tuple(spec.threat_lists),
        allowed_pairs=tuple(sorted({(p.src, p.dst)
                                    for p in spec.cross_subscription.allowed_pairs})),
        expected_services=None if spec.expected_services is None else {
            name: tuple(sorted(set(services), key=str.lower))
            for name, services in spec.expected_services.items()
        },
        service_tags=spec.enrichment.service_tags,
        country_overrides=tuple(sorted(
            ((_network(net), country.upper())
             for net, country in spec.enrichment.countries.items()),
            key=lambda item: (int(item[0].network_address), item[0].prefixlen))),
        interval_minutes=spec.enrichment.interval_minutes,
        policy_reach=spec.blast_radius.policy,
        policy_ports=tuple(sorted(set(spec.blast_radius.policy_ports))),
        max_policy_hosts=spec.blast_radius.max_policy_hosts,
    )


def parse_threat_list(text: str, source: str) -> tuple[tuple[ThreatEntry, ...],
                                                       tuple[ConfigIssue, ...]]:
    """Parse a threat list: one ``<ip-or-cidr>[,<threat type>[,<description>]]`` per line;
    blank lines and ``#`` comments are ignored. Bad lines are issues (with their line), never
    dropped silently."""
    entries: list[ThreatEntry] = []
    issues: list[ConfigIssue] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",", 2)]
        try:
            network = _network(parts[0])
        except ValueError as err:
            issues.append(ConfigIssue("", number, str(err), source))
            continue
        threat = parts[1] if len(parts) > 1 and parts[1] else "Listed"
        description = parts[2] if len(parts) > 2 else ""
        entries.append(ThreatEntry(network, threat, description, source))
    return tuple(entries), tuple(issues)
