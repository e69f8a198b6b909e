"""Pass 3 of the policy loader: checks across values, and conversion to the model types.

Pass 2 (pydantic) has checked every value alone. What is left needs the whole policy: group
references in rules, unique names and priorities, ports that a protocol cannot carry, and the
warnings a reviewer wants before a policy reaches NSGs (rules open to the Internet, rules that
overlap with opposite actions, allows that cannot take effect). Split from ``loader`` to keep each
module small; ``loader`` is the public entry point.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, cast
from typing import Protocol as TypingProtocol

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from shared.domain.assets import IpNetwork
from shared.policy.model import (
    ALL_PORTS,
    BUILTIN_ANY,
    BUILTIN_INTERNET,
    Action,
    AllOf,
    AnyOf,
    AsgSelector,
    CidrSelector,
    EnforcementPoint,
    Group,
    InboundPosture,
    NotOf,
    OutboundPosture,
    Ownership,
    Policy,
    PortRange,
    Posture,
    Protocol,
    ResourceGroupSelector,
    Rule,
    Selector,
    SubnetSelector,
    SubscriptionSelector,
    TagsSelector,
    VnetSelector,
)
from shared.policy.schema import (
    BUILTINS,
    SERVICE_TAG_RE,
    OwnershipSpec,
    PolicySpec,
    PostureSpec,
    RuleSpec,
    SelectorSpec,
    parse_cidr,
)

YamlPath = tuple[Any, ...]
M = TypeVar("M", bound=BaseModel)

# Azure service tags usable in NSG rules (learn.microsoft.com, "Available service tags"). Only used
# to catch typos and casing: an unknown tag is a warning, since Azure adds tags over time.
KNOWN_SERVICE_TAGS = (
    "ActionGroup", "ApiManagement", "AppConfiguration", "AppService", "AppServiceManagement",
    "ApplicationInsightsAvailability", "AutonomousDevelopmentPlatform", "AzureActiveDirectory",
    "AzureActiveDirectoryDomainServices", "AzureAdvancedThreatProtection",
    "AzureArcInfrastructure", "AzureAttestation", "AzureBackup", "AzureBotService", "AzureCloud",
    "AzureCognitiveSearch", "AzureConnectors", "AzureContainerAppsService",
    "AzureContainerRegistry", "AzureCosmosDB", "AzureDataExplorerManagement", "AzureDataLake",
    "AzureDatabricks", "AzureDevOps", "AzureDevSpaces", "AzureDeviceUpdate", "AzureDigitalTwins",
    "AzureEventGrid", "AzureFrontDoor.Backend", "AzureFrontDoor.FirstParty",
    "AzureFrontDoor.Frontend", "AzureHealthcareAPIs", "AzureInformationProtection",
    "AzureIoTHub", "AzureKeyVault", "AzureLoadBalancer", "AzureMachineLearning", "AzureMonitor",
    "AzureOpenDatasets", "AzurePlatformDNS", "AzurePlatformIMDS", "AzurePlatformLKM",
    "AzureResourceManager", "AzureSignalR", "AzureSiteRecovery", "AzureSphere",
    "AzureSpringCloud", "AzureStack", "AzureTrafficManager", "AzureUpdateDelivery",
    "AzureWebPubSub", "BatchNodeManagement", "ChaosStudio", "CognitiveServicesFrontend",
    "CognitiveServicesManagement", "DataFactory", "DataFactoryManagement", "EventHub",
    "GatewayManager", "GuestAndHybridManagement", "HDInsight", "Internet", "KustoAnalytics",
    "LogicApps", "LogicAppsManagement", "MicrosoftCloudAppSecurity", "MicrosoftContainerRegistry",
    "MicrosoftDefenderForEndpoint", "PowerBI", "PowerPlatformInfra", "PowerQueryOnline",
    "Scuba", "SerialConsole", "ServiceBus", "ServiceFabric", "Sql", "SqlManagement", "Storage",
    "StorageSyncService", "VideoIndexer", "VirtualNetwork", "WindowsAdminCenter",
    "WindowsVirtualDesktop",
)
_TAGS_BY_LOWER = {tag.lower(): tag for tag in KNOWN_SERVICE_TAGS}


def canonical_service_tag(token: str) -> str | None:
    """The canonical spelling of a known service tag (``storage.WestEurope`` ->
    ``Storage.WestEurope``), or None when the tag is not known."""
    whole = _TAGS_BY_LOWER.get(token.lower())
    if whole is not None:
        return whole
    base, dot, region = token.partition(".")
    canonical = _TAGS_BY_LOWER.get(base.lower())
    return f"{canonical}.{region}" if canonical is not None and dot else None


class IssueSink(TypingProtocol):
    """Where pass 3 reports (the loader's issue collector)."""

    def add(self, code: str, message: str, path: YamlPath, line: int | None = -1) -> None: ...

    def line_for(self, path: YamlPath) -> int | None: ...

    def knows(self, path: YamlPath) -> bool: ...


@dataclass(frozen=True, slots=True)
class RuleView:
    """A rule's fields that passed pass 2; None where the value was invalid or missing. Lets pass
    3 check what it can (duplicate priority, unknown group) in a rule that has other errors."""

    name: str | None = None
    priority: int | None = None
    source: str | None = None
    destination: str | None = None
    ports: list[PortRange | None] | None = None
    protocol: str | None = None
    action: str | None = None

    @classmethod
    def of(cls, spec: RuleSpec) -> RuleView:
        return cls(spec.name, spec.priority, spec.from_, spec.to, spec.ports, spec.protocol,
                   spec.action)

    @classmethod
    def salvage(cls, raw: Any) -> RuleView:
        if not isinstance(raw, dict):
            return cls()
        values = {name: _field(name, raw[alias]) for name, alias in _RULE_ALIASES.items()
                  if alias in raw}
        return cls(
            values.get("name"), values.get("priority"), values.get("from_"), values.get("to"),
            values.get("ports"), values.get("protocol"), values.get("action"),
        )


def _adapter(info: FieldInfo) -> TypeAdapter[Any]:
    annotation = (
        cast(Any, Annotated)[(info.annotation, *info.metadata)] if info.metadata
        else info.annotation
    )
    return TypeAdapter(annotation, config=ConfigDict(strict=True))


_RULE_ALIASES = {name: info.alias or name for name, info in RuleSpec.model_fields.items()}
_RULE_FIELDS = {name: _adapter(info) for name, info in RuleSpec.model_fields.items()}


def _field(name: str, raw: Any) -> Any:
    try:
        return _RULE_FIELDS[name].validate_python(raw)
    except ValidationError:
        return None


@dataclass
class Parts:
    """What passed pass 2, piece by piece. When the whole document failed, groups and rule fields
    are re-validated one by one so pass 3 still checks the good ones (one bad port must not hide
    a duplicate priority)."""

    posture: PostureSpec = field(default_factory=lambda: PostureSpec())
    enforcement: str = "subnet"
    ownership: OwnershipSpec | None = None
    group_names: set[str] | None = field(default_factory=set)  # None: groups unreadable
    groups: list[tuple[str, SelectorSpec]] = field(default_factory=list)
    rules: list[tuple[int, RuleView]] = field(default_factory=list)

    @classmethod
    def of(cls, spec: PolicySpec) -> Parts:
        groups = list((spec.groups or {}).items())
        return cls(
            posture=spec.posture or PostureSpec(),
            enforcement=spec.enforcement,
            ownership=spec.ownership,
            group_names={name for name, _ in groups},
            groups=groups,
            rules=[(i, RuleView.of(rule)) for i, rule in enumerate(spec.rules or [])],
        )

    @classmethod
    def salvage(cls, data: dict[Any, Any]) -> Parts:
        parts = cls(posture=_try(PostureSpec, data.get("posture") or {}) or PostureSpec())
        raw_groups = data.get("groups")
        if isinstance(raw_groups, dict):
            parts.group_names = {name for name in raw_groups if isinstance(name, str)}
            for name, raw in raw_groups.items():
                selector = _try(SelectorSpec, raw)
                if isinstance(name, str) and selector is not None:
                    parts.groups.append((name, selector))
        elif raw_groups is not None:
            parts.group_names = None
        raw_rules = data.get("rules")
        if isinstance(raw_rules, list):
            parts.rules = [(i, RuleView.salvage(raw)) for i, raw in enumerate(raw_rules)]
        return parts


def _try(model: type[M], raw: Any) -> M | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


# -- conversion helpers -----------------------------------------------------------------------


def normalize_ports(items: Sequence[PortRange | None]) -> tuple[PortRange, ...]:
    """Sorted, merged ranges (``[443, 80, 81]`` -> ``80-81, 443``); ``any`` is ALL_PORTS. The
    compiler then never sees two spellings of the same set."""
    if None in items:
        return ALL_PORTS
    merged: list[PortRange] = []
    for item in sorted((i for i in items if i is not None), key=lambda r: (r.low, r.high)):
        if merged and item.low <= merged[-1].high + 1:
            merged[-1] = PortRange(merged[-1].low, max(merged[-1].high, item.high))
        else:
            merged.append(item)
    return tuple(merged)


def _port_overlap(a: Iterable[PortRange], b: Iterable[PortRange]) -> tuple[PortRange, ...]:
    b = tuple(b)
    out = [PortRange(max(x.low, y.low), min(x.high, y.high)) for x in a for y in b]
    return tuple(r for r in out if r.low <= r.high)


def _protocol_overlap(a: Protocol, b: Protocol) -> Protocol | None:
    if b in (a, Protocol.ANY):
        return a
    return b if a == Protocol.ANY else None


def _ports_text(ports: tuple[PortRange, ...]) -> str:
    return "all ports" if ports == ALL_PORTS else "port " + ", ".join(map(str, ports))


def _has_positive(selector: Selector) -> bool:
    """False when a selector only excludes (``not``), i.e. it matches all but a few workloads."""
    if isinstance(selector, NotOf):
        return False
    if isinstance(selector, AllOf):
        return any(_has_positive(item) for item in selector.items)
    if isinstance(selector, AnyOf):
        return all(_has_positive(item) for item in selector.items)
    return True


def _external(selector: Selector) -> bool:
    """True when a selector names only address ranges (no workloads of the estate)."""
    if isinstance(selector, CidrSelector):
        return True
    if isinstance(selector, AllOf | AnyOf):
        return all(_external(item) for item in selector.items)
    return False


_REF_SELECTORS: dict[str, Any] = {
    "vnet": VnetSelector, "subnet": SubnetSelector, "asg": AsgSelector,
    "resourceGroup": ResourceGroupSelector, "subscription": SubscriptionSelector,
}


# -- the builder ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Placed:
    index: int
    rule: Rule


class PolicyBuilder:
    """Runs pass 3 over :class:`Parts` and builds the :class:`Policy` (meaningful only when no
    error was reported)."""

    def __init__(self, parts: Parts, sink: IssueSink) -> None:
        self.parts = parts
        self.sink = sink
        self.external: set[str] = set()

    def build(self) -> Policy:
        groups = tuple(self._group(name, spec) for name, spec in self.parts.groups)
        self.external = {group.name for group in groups if _external(group.selector)}
        self._check_unique("name", "rule name")
        self._check_unique("priority", "priority")
        placed = [p for i, view in self.parts.rules if (p := self._rule(i, view)) is not None]
        for item in placed:
            self._warn_exposure(item)
        self._check_overlaps(placed)
        ownership = self.parts.ownership or OwnershipSpec()
        return Policy(
            posture=Posture(
                InboundPosture(self.parts.posture.inbound),
                OutboundPosture(self.parts.posture.outbound),
            ),
            enforcement=EnforcementPoint(self.parts.enforcement),
            groups=groups,
            rules=tuple(sorted((p.rule for p in placed), key=lambda r: r.priority)),
            ownership=Ownership(ownership.band[0], ownership.band[1], ownership.prefix),
        )

    # groups

    def _group(self, name: str, spec: SelectorSpec) -> Group:
        path = ("groups", name)
        tag = _TAGS_BY_LOWER.get(name)
        if tag is not None:
            self.sink.add(
                "ZTS-P109",
                f"group {name!r} has the name of the service tag {tag!r} but for the case: "
                f"'from: {name}' means the group and 'from: {tag}' the tag; rename the group",
                path,
            )
        selector = self._selector(spec, path)
        if not _has_positive(selector):
            self.sink.add(
                "ZTS-P102",
                f"group {name!r} has no positive selector: it matches every workload except "
                "those excluded; narrow it with 'all: [<selector>, {not: ...}]'",
                path,
            )
        return Group(name, selector, self.sink.line_for(path))

    def _selector(self, spec: SelectorSpec, path: YamlPath) -> Selector:
        key = spec.keys()[0]
        value = spec.value()
        here = (*path, key)
        if key in _REF_SELECTORS:
            selector: Selector = _REF_SELECTORS[key](value)
            return selector
        if key == "tags":
            return TagsSelector(tuple(sorted(value.items())))
        if key == "cidr":
            return CidrSelector(self._cidrs(value, here))
        if key == "not":
            return NotOf(self._selector(value, here))
        items = tuple(self._selector(item, (*here, i)) for i, item in enumerate(value))
        return AllOf(items) if key == "all" else AnyOf(items)

    def _cidrs(self, texts: list[str], path: YamlPath) -> tuple[IpNetwork, ...]:
        networks: list[IpNetwork] = []
        for index, text in enumerate(texts):
            network, host_bits = parse_cidr(text)
            if host_bits:
                where = (*path, index) if self.sink.knows((*path, index)) else path
                self.sink.add(
                    "ZTS-P101", f"{text!r} has host bits set; using {network}", where
                )
            if network not in networks:
                networks.append(network)
        return tuple(networks)

    # rules

    def _check_unique(self, attribute: str, label: str) -> None:
        first: dict[Any, int] = {}
        for index, view in self.parts.rules:
            value = getattr(view, attribute)
            if value is None:
                continue
            if value in first:
                line = self.sink.line_for(("rules", first[value]))
                self.sink.add(
                    "ZTS-P031" if attribute == "name" else "ZTS-P033",
                    f"duplicate {label} {value!r} (first used by rules[{first[value]}], "
                    f"line {line})",
                    ("rules", index, attribute),
                )
            else:
                first[value] = index

    def _rule(self, index: int, view: RuleView) -> _Placed | None:
        path = ("rules", index)
        source = None if view.source is None else self._peer(view.source, (*path, "from"))
        destination = None if view.destination is None else self._peer(
            view.destination, (*path, "to"))
        ports = None if view.ports is None else normalize_ports(view.ports)
        protocol = None if view.protocol is None else Protocol(view.protocol)
        if protocol in (Protocol.ICMP, Protocol.ANY) and ports not in (None, ALL_PORTS):
            self.sink.add(
                "ZTS-P036",
                f"protocol {protocol} cannot be limited to ports (NSGs apply ports to tcp and udp "
                "only): write 'ports: any', or split into tcp and udp rules",
                (*path, "ports"),
            )
            return None
        if (view.name is None or view.priority is None or source is None or destination is None
                or ports is None or protocol is None or view.action is None):
            return None
        rule = Rule(
            view.name, view.priority, source, destination, ports, protocol, Action(view.action),
            self.sink.line_for(path),
        )
        return _Placed(index, rule)

    def _peer(self, token: str, path: YamlPath) -> str | None:
        """Resolve ``from``/``to``: a group, a built-in, or a service tag passed through."""
        names = self.parts.group_names
        if names is None or token in names:
            return token  # (None: the groups section is unreadable and already reported)
        if token.lower() in BUILTINS:
            return token.lower()  # 'Internet' is the built-in, so the guardrails see it
        if canonical_service_tag(token) == token:
            return token  # exactly a known tag, even if a group's name folds to it ('storage')
        folded = {name.lower(): name for name in names}
        if token.lower() in folded:
            self._unknown(token, path, folded[token.lower()])
            return None
        tag = canonical_service_tag(token) if SERVICE_TAG_RE.fullmatch(token) else None
        if tag is None and (token[:1].islower() or not SERVICE_TAG_RE.fullmatch(token)):
            close = difflib.get_close_matches(token, sorted(names), n=1, cutoff=0.75)
            self._unknown(token, path, close[0] if close else None)
            return None
        return self._service_tag(token, tag, path)

    def _service_tag(self, token: str, canonical: str | None, path: YamlPath) -> str:
        """A token shaped like a service tag: known ones get their canonical spelling, unknown
        ones pass through with a warning (Azure adds tags; zts's list is only a typo guard)."""
        if canonical is None:
            close = difflib.get_close_matches(token, KNOWN_SERVICE_TAGS, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.sink.add(
                "ZTS-P106",
                f"{token!r} is not a known Azure service tag; it is passed to Azure as written"
                f"{hint}",
                path,
            )
            return token
        if canonical != token:
            self.sink.add(
                "ZTS-P107", f"service tag {token!r} is spelled {canonical!r}; using that", path
            )
        return canonical

    def _unknown(self, token: str, path: YamlPath, suggestion: str | None) -> None:
        hint = (
            f" (did you mean {suggestion!r}?)" if suggestion else
            ": define it under groups, or use internet, any or an Azure service tag"
        )
        self.sink.add("ZTS-P034", f"unknown group {token!r}{hint}", path)

    def _warn_exposure(self, item: _Placed) -> None:
        rule, path = item.rule, ("rules", item.index)
        if rule.action != Action.ALLOW:
            return
        names = self.parts.group_names or set()
        to_members = rule.destination in names or rule.destination == BUILTIN_ANY
        if rule.source in BUILTINS and to_members:
            origin = "the Internet" if rule.source == BUILTIN_INTERNET else (
                "any source, including the Internet")
            self.sink.add(
                "ZTS-P103",
                f"rule {rule.name!r} allows traffic from {origin} to {rule.destination!r}",
                (*path, "from"),
            )
        if rule.destination in self.external and self.parts.posture.outbound == "allow":
            self.sink.add(
                "ZTS-P105",
                f"rule {rule.name!r} allows traffic to {rule.destination!r}, which holds only "
                "external ranges: zts cannot enforce inbound there, and with outbound posture "
                "'allow' the rule has no effect",
                (*path, "to"),
            )

    def _check_overlaps(self, placed: list[_Placed]) -> None:
        """Warn when two rules between the same peers overlap with opposite actions (the earlier
        one silently wins) or repeat each other."""
        buckets: dict[tuple[str, str], list[_Placed]] = defaultdict(list)
        for item in sorted(placed, key=lambda p: p.rule.priority):
            buckets[(item.rule.source, item.rule.destination)].append(item)
        for bucket in buckets.values():
            for later_at, later in enumerate(bucket):
                for earlier in bucket[:later_at]:
                    self._compare(earlier, later)

    def _compare(self, earlier: _Placed, later: _Placed) -> None:
        a, b = earlier.rule, later.rule
        protocol = _protocol_overlap(a.protocol, b.protocol)
        ports = _port_overlap(a.ports, b.ports)
        if protocol is None or not ports or a.priority == b.priority:
            return
        path = ("rules", later.index)
        if a.action != b.action:
            self.sink.add(
                "ZTS-P104",
                f"rule {b.name!r} overlaps rule {a.name!r} (priority {a.priority}, line "
                f"{a.line}) on {protocol} {_ports_text(ports)} with the opposite action; "
                f"{a.name!r} applies there",
                path,
            )
        elif (a.protocol, a.ports) == (b.protocol, b.ports):
            self.sink.add(
                "ZTS-P108",
                f"rule {b.name!r} repeats rule {a.name!r} (line {a.line}): same from, to, "
                "protocol, ports and action",
                path,
            )
