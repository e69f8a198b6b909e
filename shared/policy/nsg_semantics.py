"""Azure NSG rule semantics, compiled into fast matchers.

This module turns :class:`SecurityRule` values into a :class:`RuleTable` of matchers for one NSG,
one direction and one VNet context. It is written from Microsoft's documentation, never from
zts's compiler, because it exists to *check* the compiler (design.md, decision 6):

* ``network-security-groups-overview.md`` (MicrosoftDocs/azure-docs, 2025-07): rule properties,
  first match by priority, the six default rules, "Any encompasses TCP, UDP, and ICMP",
  augmented rules (several prefixes / port ranges in one rule).
* ``service-tags-overview.md``: ``VirtualNetwork``, ``Internet``, ``AzureLoadBalancer`` and the
  Azure service tags.
* ``application-security-groups.md``: an ASG reference matches the NIC IP configurations that
  are members of the ASG.

Addresses of both families live on one integer line so that a matcher is a single sorted list
of intervals: an IPv4 address is its 32-bit value, an IPv6 address is its 128-bit value plus
``2**32``. A rule side therefore never matches an address of the other family by accident.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_network

from shared.domain.arm_id import key
from shared.domain.assets import Access, Direction, IpAddress, IpNetwork, SecurityRule

__all__ = [
    "ALL_ADDRESSES",
    "AZURE_HOST_VIP",
    "DEFAULT_RULES",
    "NON_INTERNET_NETWORKS",
    "PACKET_PROTOCOLS",
    "AddressMatcher",
    "CompiledRule",
    "IntervalSet",
    "NsgRuleError",
    "RuleTable",
    "TagResolver",
    "compile_direction",
    "first_match",
    "point_of",
]

V6_OFFSET = 1 << 32
"""IPv6 addresses are shifted above the IPv4 space on the shared integer line."""
_LAST_POINT = V6_OFFSET + (1 << 128) - 1

AZURE_HOST_VIP: IPv4Address = IPv4Address("168.63.129.16")
"""The virtual IP of the host: health probes (``AzureLoadBalancer``), DNS, DHCP
(network-security-groups-overview.md, "Azure platform considerations")."""

NON_INTERNET_NETWORKS: tuple[IpNetwork, ...] = tuple(
    ip_network(text)
    for text in (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
        "100.64.0.0/10",  # RFC 6598 shared address space
        "127.0.0.0/8", "169.254.0.0/16",  # loopback, link-local
        "168.63.129.16/32",  # Azure host VIP
        "fc00::/7", "fe80::/10", "::1/128",  # IPv6 unique-local, link-local, loopback
    )
)  # fmt: skip
"""Ranges never in the ``Internet`` tag. Azure's system routes send RFC 1918 and RFC 6598 to
next hop *None* and only ``0.0.0.0/0`` to *Internet* (virtual-networks-udr-overview.md), so
private space is not "reachable by the public internet" (service-tags-overview.md)."""

PACKET_PROTOCOLS = frozenset({"Tcp", "Udp", "Icmp"})
"""Protocols a packet may carry. A ``*`` rule covers exactly these ("Any encompasses TCP, UDP,
and ICMP"); ``Esp`` and ``Ah`` rules therefore never match a packet of these protocols."""

_RULE_PROTOCOLS = {"tcp": "Tcp", "udp": "Udp", "icmp": "Icmp", "esp": "Esp", "ah": "Ah", "*": "*"}
_ANY_WORDS = frozenset({"*", "any"})
_TAG_SHAPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_PORT_SHAPE = re.compile(r"^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$")
_CUSTOM_PRIORITIES = range(100, 4097)

# Built-in tags, lower-cased, with the classic-model spellings service-tags-overview.md lists.
_VIRTUAL_NETWORK_TAGS = frozenset({"virtualnetwork", "virtual_network"})
_INTERNET_TAGS = frozenset({"internet"})
_LOAD_BALANCER_TAGS = frozenset({"azureloadbalancer", "azure_loadbalancer"})
BUILTIN_TAGS = _VIRTUAL_NETWORK_TAGS | _INTERNET_TAGS | _LOAD_BALANCER_TAGS


class NsgRuleError(ValueError):
    """A rule ARM would reject or whose meaning is ambiguous (duplicate priority, bad port or
    prefix). The evaluator refuses to guess, so a broken compiled plan fails loudly."""


def point_of(ip: IpAddress) -> int:
    """The position of an address on the shared integer line (see the module docstring)."""
    return int(ip) if ip.version == 4 else int(ip) + V6_OFFSET


def _interval_of(network: IpNetwork) -> tuple[int, int]:
    low = int(network.network_address)
    high = int(network.broadcast_address)
    if network.version == 6:
        return low + V6_OFFSET, high + V6_OFFSET
    return low, high


class IntervalSet:
    """An immutable set of integers stored as sorted, disjoint, non-adjacent intervals.

    Used for address sets (on the shared integer line) and port sets. Membership is a binary
    search, so a rule with thousands of collapsed prefixes costs the same as one with a single
    prefix.
    """

    __slots__ = ("ends", "starts")

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()) -> None:
        merged: list[list[int]] = []
        for low, high in sorted(intervals):
            if merged and low <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        self.starts: tuple[int, ...] = tuple(m[0] for m in merged)
        self.ends: tuple[int, ...] = tuple(m[1] for m in merged)

    @classmethod
    def of_networks(cls, networks: Iterable[IpNetwork]) -> IntervalSet:
        return cls(_interval_of(n) for n in networks)

    def contains(self, value: int) -> bool:
        index = bisect_right(self.starts, value) - 1
        return index >= 0 and value <= self.ends[index]

    def intervals(self) -> tuple[tuple[int, int], ...]:
        return tuple(zip(self.starts, self.ends, strict=True))

    def union(self, other: IntervalSet) -> IntervalSet:
        return IntervalSet(self.intervals() + other.intervals())

    def complement(self, low: int, high: int) -> IntervalSet:
        """Everything in ``[low, high]`` that is not in this set."""
        gaps: list[tuple[int, int]] = []
        cursor = low
        for start, end in self.intervals():
            if end < low or start > high:
                continue
            if start > cursor:
                gaps.append((cursor, start - 1))
            cursor = max(cursor, end + 1)
        if cursor <= high:
            gaps.append((cursor, high))
        return IntervalSet(gaps)

    def is_empty(self) -> bool:
        return not self.starts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IntervalSet) and self.intervals() == other.intervals()

    def __hash__(self) -> int:
        return hash(self.intervals())

    def __repr__(self) -> str:
        return f"IntervalSet({list(self.intervals())!r})"


ALL_ADDRESSES = IntervalSet([(0, _LAST_POINT)])


def _rule(name: str, direction: Direction, access: Access, priority: int,
          source: str, destination: str, description: str) -> SecurityRule:
    return SecurityRule(
        name=name, priority=priority, direction=direction, access=access, protocol="*",
        source_prefixes=(source,), destination_prefixes=(destination,),
        description=description, is_default=True,
    )


DEFAULT_RULES: tuple[SecurityRule, ...] = (
    _rule("AllowVnetInBound", Direction.INBOUND, Access.ALLOW, 65000, "VirtualNetwork",
          "VirtualNetwork", "Allow inbound traffic from all VMs in VNET"),
    _rule("AllowAzureLoadBalancerInBound", Direction.INBOUND, Access.ALLOW, 65001,
          "AzureLoadBalancer", "*", "Allow inbound traffic from azure load balancer"),
    _rule("DenyAllInBound", Direction.INBOUND, Access.DENY, 65500, "*", "*",
          "Deny all inbound traffic"),
    _rule("AllowVnetOutBound", Direction.OUTBOUND, Access.ALLOW, 65000, "VirtualNetwork",
          "VirtualNetwork", "Allow outbound traffic from all VMs to all VMs in VNET"),
    _rule("AllowInternetOutBound", Direction.OUTBOUND, Access.ALLOW, 65001, "*", "Internet",
          "Allow outbound traffic from all VMs to Internet"),
    _rule("DenyAllOutBound", Direction.OUTBOUND, Access.DENY, 65500, "*", "*",
          "Deny all outbound traffic"),
)
"""The six rules Azure puts in every NSG (network-security-groups-overview.md, "Default security
rules"); used when a snapshot's NSG does not list ``defaultSecurityRules`` for a direction."""


class TagResolver:
    """Service tag name -> address set, for the estate the evaluator was built over.

    * ``VirtualNetwork`` depends on the VNet the NSG is evaluated for and is passed in per call.
    * ``Internet`` is every address outside :data:`NON_INTERNET_NETWORKS` and outside every VNet
      address space of the estate (service-tags-overview.md: "outside the virtual network and
      reachable by the public internet").
    * ``AzureLoadBalancer`` is the host VIP 168.63.129.16 (service-tags-overview.md).
    * Any other tag comes from ``service_tag_ranges`` (exact name, case-insensitive; a regional
      tag such as ``Sql.WestEurope`` never falls back to ``Sql``, which would widen it). A tag
      not given there is *unknown*: :meth:`resolve` returns ``None`` and the caller records it.
    """

    def __init__(self, estate_spaces: Iterable[IpNetwork],
                 service_tag_ranges: Mapping[str, Sequence[IpNetwork]] | None = None) -> None:
        blocked = IntervalSet.of_networks((*NON_INTERNET_NETWORKS, *estate_spaces))
        self.internet = blocked.complement(0, _LAST_POINT)
        self.load_balancer = IntervalSet.of_networks([ip_network(AZURE_HOST_VIP)])
        self.service_tags: dict[str, IntervalSet] = {}
        for name, networks in (service_tag_ranges or {}).items():
            lowered = name.lower()
            if lowered in BUILTIN_TAGS:
                raise ValueError(
                    f"service_tag_ranges must not define the built-in tag {name!r}: the evaluator "
                    "derives it from the estate"
                )
            self.service_tags[lowered] = IntervalSet.of_networks(networks)

    def resolve(self, tag: str, virtual_network: IntervalSet) -> IntervalSet | None:
        lowered = tag.lower()
        if lowered in _VIRTUAL_NETWORK_TAGS:
            return virtual_network
        if lowered in _INTERNET_TAGS:
            return self.internet
        if lowered in _LOAD_BALANCER_TAGS:
            return self.load_balancer
        return self.service_tags.get(lowered)


@dataclass(frozen=True, slots=True)
class AddressMatcher:
    """One side (source or destination) of a compiled rule.

    ``any_address`` short-cuts ``*``; ``starts``/``ends`` are the :class:`IntervalSet` of the
    prefixes and resolved tags (kept as bare tuples so the hot loop reads them directly);
    ``asg_keys`` are lower-cased ASG ids, matched against the ASGs of the endpoint's IP
    configuration.
    """

    any_address: bool
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    asg_keys: frozenset[str]

    def matches(self, point: int, asgs: frozenset[str]) -> bool:
        """Readable form of the test :func:`first_match` inlines."""
        if self.any_address:
            return True
        index = bisect_right(self.starts, point) - 1
        if index >= 0 and point <= self.ends[index]:
            return True
        return bool(self.asg_keys) and not self.asg_keys.isdisjoint(asgs)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready for matching. ``None`` for protocols or ports means "any"."""

    name: str
    priority: int
    access: Access
    protocols: frozenset[str] | None
    source_ports: IntervalSet | None
    destination_ports: IntervalSet | None
    source: AddressMatcher
    destination: AddressMatcher
    is_default: bool


class RuleTable:
    """The rules of one NSG direction in evaluation order, with a lazy protocol/port index.

    Compiled NSGs hold many port-specific rules, and a packet can only match those whose
    protocol and destination ports admit it. The destination port space is cut at every rule's
    port boundaries into segments inside which no rule's port test changes; the first packet
    landing in a (protocol, segment) computes that segment's candidate rules, later ones reuse
    them. Memory stays bounded by the number of segments, which the rules fix.
    """

    __slots__ = ("_bounds", "_by_protocol", "rules")

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        bounds = {0}
        for rule in self.rules:
            if rule.destination_ports is not None:
                bounds.update(rule.destination_ports.starts)
                bounds.update(end + 1 for end in rule.destination_ports.ends if end < 65535)
        self._bounds: tuple[int, ...] = tuple(sorted(bounds))
        self._by_protocol: dict[str, list[tuple[int, ...] | None]] = {
            protocol: [None] * len(self._bounds) for protocol in PACKET_PROTOCOLS
        }

    def candidates(self, protocol: str, dst_port: int) -> tuple[int, ...]:
        """Indexes of the rules whose protocol and destination ports admit the packet."""
        segments = self._by_protocol[protocol]
        segment = bisect_right(self._bounds, dst_port) - 1
        found = segments[segment]
        if found is None:
            found = tuple(
                index for index, rule in enumerate(self.rules)
                if (rule.protocols is None or protocol in rule.protocols)
                and (rule.destination_ports is None or rule.destination_ports.contains(dst_port))
            )
            segments[segment] = found
        return found

    def __len__(self) -> int:
        return len(self.rules)


def first_match(table: RuleTable, protocol: str, src_port: int, dst_port: int,
                src_point: int, src_asgs: frozenset[str], dst_point: int,
                dst_asgs: frozenset[str]) -> int:
    """The index of the first rule (in priority order) matching the 5-tuple, or -1.

    "Once traffic matches a rule, processing stops" (network-security-groups-overview.md).
    Protocol and destination port come from the table's index; the source port and address
    tests of :meth:`IntervalSet.contains` and :meth:`AddressMatcher.matches` are written out
    inline, because this loop runs millions of times in the property tests and a method call
    per test would halve the throughput.
    """
    rules = table.rules
    for index in table.candidates(protocol, dst_port):
        rule = rules[index]
        ports = rule.source_ports
        if ports is not None:
            at = bisect_right(ports.starts, src_port) - 1
            if at < 0 or src_port > ports.ends[at]:
                continue
        side = rule.source
        if not side.any_address:
            at = bisect_right(side.starts, src_point) - 1
            if (at < 0 or src_point > side.ends[at]) and (
                not side.asg_keys or side.asg_keys.isdisjoint(src_asgs)
            ):
                continue
        side = rule.destination
        if not side.any_address:
            at = bisect_right(side.starts, dst_point) - 1
            if (at < 0 or dst_point > side.ends[at]) and (
                not side.asg_keys or side.asg_keys.isdisjoint(dst_asgs)
            ):
                continue
        return index
    return -1


def _where(nsg_id: str, rule: SecurityRule) -> str:
    return f"NSG {nsg_id} rule {rule.name!r}"


def _protocols(nsg_id: str, rule: SecurityRule) -> frozenset[str] | None:
    canonical = _RULE_PROTOCOLS.get(str(rule.protocol).strip().lower())
    if canonical is None:
        raise NsgRuleError(f"{_where(nsg_id, rule)}: unknown protocol {rule.protocol!r}")
    return None if canonical == "*" else frozenset({canonical})


def _ports(nsg_id: str, rule: SecurityRule, specs: Sequence[str], side: str) -> IntervalSet | None:
    """Port specs -> interval set, or ``None`` for "any". Accepts ``*``, ``N``, ``A-B`` and
    comma-separated lists of those (the portal's notation for augmented rules)."""
    intervals: list[tuple[int, int]] = []
    for spec in specs:
        for part in str(spec).split(","):
            text = part.strip()
            if text.lower() in _ANY_WORDS:
                return None
            found = _PORT_SHAPE.match(text)
            low = int(found.group(1)) if found else -1
            high = int(found.group(2) or low) if found else -1
            if not found or not 0 <= low <= high <= 65535:
                raise NsgRuleError(f"{_where(nsg_id, rule)}: bad {side} port {spec!r}")
            intervals.append((low, high))
    if not intervals:
        raise NsgRuleError(f"{_where(nsg_id, rule)}: no {side} port")
    ports = IntervalSet(intervals)
    return None if ports.intervals() == ((0, 65535),) else ports


def _side(nsg_id: str, rule: SecurityRule, prefixes: Sequence[str], asg_ids: Sequence[str],
          side: str, virtual_network: IntervalSet, tags: TagResolver,
          unknown_tags: set[str]) -> AddressMatcher:
    """One address side. Prefixes and ASGs are unioned (ARM rejects mixing them on one side;
    the union is the only reading that does not drop either)."""
    if not prefixes and not asg_ids:
        raise NsgRuleError(f"{_where(nsg_id, rule)}: no {side} address or ASG")
    intervals: list[tuple[int, int]] = []
    for prefix in prefixes:
        text = prefix.strip()
        if text.lower() in _ANY_WORDS:
            return AddressMatcher(True, (), (), frozenset())
        try:
            network = ip_network(text, strict=False)
        except ValueError:
            network = None
        if network is not None:
            intervals.append(_interval_of(network))
            continue
        if not _TAG_SHAPE.match(text):
            raise NsgRuleError(f"{_where(nsg_id, rule)}: bad {side} address {prefix!r}")
        resolved = tags.resolve(text, virtual_network)
        if resolved is None:
            unknown_tags.add(text)  # matches nothing: never silently "any"
        else:
            intervals.extend(resolved.intervals())
    ranges = IntervalSet(intervals)
    return AddressMatcher(False, ranges.starts, ranges.ends, frozenset(key(a) for a in asg_ids))


def compile_rule(nsg_id: str, rule: SecurityRule, virtual_network: IntervalSet,
                 tags: TagResolver, unknown_tags: set[str]) -> CompiledRule:
    return CompiledRule(
        name=rule.name,
        priority=rule.priority,
        access=Access(rule.access),
        protocols=_protocols(nsg_id, rule),
        source_ports=_ports(nsg_id, rule, rule.source_ports, "source"),
        destination_ports=_ports(nsg_id, rule, rule.destination_ports, "destination"),
        source=_side(nsg_id, rule, rule.source_prefixes, rule.source_asg_ids, "source",
                     virtual_network, tags, unknown_tags),
        destination=_side(nsg_id, rule, rule.destination_prefixes, rule.destination_asg_ids,
                          "destination", virtual_network, tags, unknown_tags),
        is_default=rule.is_default,
    )


def compile_direction(nsg_id: str, custom: Sequence[SecurityRule],
                      defaults: Sequence[SecurityRule], direction: Direction,
                      virtual_network: IntervalSet, tags: TagResolver,
                      unknown_tags: set[str]) -> RuleTable:
    """Custom and default rules of one direction, in evaluation order.

    Custom rules must have distinct priorities within 100-4096 (ARM enforces both: "You can't
    create two security rules with the same priority and direction"); anything else raises
    :class:`NsgRuleError` instead of picking an order. ``defaults`` are the NSG's own default
    rules when the snapshot lists some for this direction, otherwise :data:`DEFAULT_RULES`.
    """
    mine = [r for r in custom if Direction(r.direction) == direction]
    seen: dict[int, str] = {}
    for rule in mine:
        if rule.priority not in _CUSTOM_PRIORITIES:
            raise NsgRuleError(f"{_where(nsg_id, rule)}: priority {rule.priority} is outside "
                               "100-4096")
        if rule.priority in seen:
            raise NsgRuleError(f"{_where(nsg_id, rule)}: priority {rule.priority} is also used "
                               f"by {seen[rule.priority]!r} ({direction.value})")
        seen[rule.priority] = rule.name
    own_defaults = [r for r in defaults if Direction(r.direction) == direction]
    if not own_defaults:
        own_defaults = [r for r in DEFAULT_RULES if r.direction == direction]
    ordered = sorted([*mine, *own_defaults], key=lambda r: r.priority)
    return RuleTable([compile_rule(nsg_id, r, virtual_network, tags, unknown_tags)
                      for r in ordered])

