"""An independent evaluator of Azure NSG semantics: does the estate admit this packet?

zts proves its compiled rules rather than hoping (design.md, decision 6; issue 3, "Proof, not
hope"): tests apply a plan as ``rules_override`` and ask this evaluator, for every pair of group
members and port, whether Azure would let the packet through. The evaluator is therefore written
from Azure's documentation and must never share code or assumptions with ``shared.policy.compiler``.

Semantics and their sources (MicrosoftDocs/azure-docs unless stated):

* **Path** (``network-security-group-how-it-works.md``): "For inbound traffic, Azure processes
  the rules in a network security group associated to a subnet first, if there's one, and then
  the rules in a network security group associated to the network interface"; outbound is the
  reverse, NIC NSG then subnet NSG. Both apply to intra-subnet traffic too. A packet leaves the
  source only if its NSGs allow it and enters the destination only if the destination's NSGs
  allow it; evaluation stops at the first deny (a denied packet is "never evaluated by" the next
  NSG), and the verdict lists only the NSGs Azure would actually process. No NSG: allowed.
* **Which NSGs**: the NIC's own NSG and the NSG of the subnet of the IP configuration that
  holds the address. An association recorded only on the NSG side (``subnets[]``,
  ``networkInterfaces[]``) is honoured when the subnet or NIC does not name an NSG itself.
  An address outside the estate (Internet, on-premises, PaaS) has no NSG on its side.
* **Within an NSG** (``network-security-groups-overview.md``): custom and default rules of the
  direction, by ascending priority, first match decides; the defaults are the NSG's own
  ``defaultSecurityRules`` or, if the snapshot lacks them, the documented six.
* **Matching, tags and ASGs**: see :mod:`shared.policy.nsg_semantics`. ``VirtualNetwork`` is
  evaluated for the VNet of the NIC the NSG is protecting (the source NIC outbound, the
  destination NIC inbound): its address space, the address spaces of VNets it is peered with
  (its own peering entry ``Connected``), and the host VIP 168.63.129.16 (the documented tag
  includes "the virtual IP address of the host").
* **Overlapping address spaces**: an address may belong to several NICs in different VNets.
  The evaluator picks the candidates in the same VNet as the other endpoint, failing that those
  in a VNet peered with it, failing that it evaluates every candidate combination; the packet is
  allowed only if every evaluated combination allows it (conservative: a proof never relies on a
  guess about routing).
* **ICMP**: ICMP carries no ports. Azure documents nothing; observation (azure-docs issue #51522)
  is that the destination port of an ICMP rule is compared with the ICMP type. The evaluator
  compares literally: for an ``Icmp`` packet put the ICMP type in ``dst_port`` (8 = echo
  request); a rule restricted to other ports does not match it.

Out of scope (stated so nobody relies on it): stateful return traffic (only the initiating
direction is decided, as Azure's flow records admit the replies); AVNM security admin rules;
routing (UDRs, NVAs, gateways, forced tunnelling - a packet is assumed to reach its destination);
the on-premises, gateway-connected and UDR parts of ``VirtualNetwork``; peerings to VNets missing
from the snapshot (their space is unknown, so it is not added); platform traffic Azure exempts
from NSGs (DHCP, DNS and IMDS to the host VIP); ESP/AH packets; NAT (NSGs see private addresses).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Literal, NamedTuple

from shared.domain.arm_id import key
from shared.domain.assets import Access, Direction, IpAddress, IpNetwork, SecurityRule
from shared.domain.inventory import Inventory, IpLocation
from shared.policy.nsg_semantics import (
    AZURE_HOST_VIP,
    PACKET_PROTOCOLS,
    IntervalSet,
    NsgRuleError,
    RuleTable,
    TagResolver,
    compile_direction,
    first_match,
    point_of,
)

__all__ = ["Endpoint", "Hop", "NsgEvaluator", "NsgRuleError", "Packet", "Step", "Verdict"]

Level = Literal["nic", "subnet"]
_PROTOCOL_NAMES = {p.lower(): p for p in PACKET_PROTOCOLS}
_NO_ASGS: frozenset[str] = frozenset()
EXTERNAL_CACHE_LIMIT = 100_000
"""How many addresses outside the estate :class:`NsgEvaluator` remembers."""


@dataclass(frozen=True, slots=True)
class Packet:
    """The initiating packet of a flow: a 5-tuple.

    ``protocol`` is ``Tcp``, ``Udp`` or ``Icmp`` (any case; stored canonical). For ``Icmp``,
    ``dst_port`` carries the ICMP type (see the module docstring). Both addresses must be of the
    same family.
    """

    src_ip: IpAddress
    dst_ip: IpAddress
    dst_port: int
    protocol: str
    src_port: int = 49152

    def __post_init__(self) -> None:
        canonical = _PROTOCOL_NAMES.get(str(self.protocol).lower())
        if canonical is None:
            raise ValueError(f"protocol must be one of {sorted(PACKET_PROTOCOLS)}, "
                             f"got {self.protocol!r}")
        object.__setattr__(self, "protocol", canonical)
        for name in ("src_port", "dst_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise ValueError(f"{name} must be an integer 0-65535, got {port!r}")
        if self.src_ip.version != self.dst_ip.version:
            raise ValueError(f"source {self.src_ip} and destination {self.dst_ip} are of "
                             "different IP families")

    @classmethod
    def of(cls, src: str, dst: str, dst_port: int, protocol: str = "Tcp",
           src_port: int = 49152) -> Packet:
        """Build a packet from address strings."""
        return cls(ip_address(src), ip_address(dst), dst_port, protocol, src_port)


class Hop(NamedTuple):
    """One NSG Azure processed: which NSG, the rule that matched (``None`` only if no rule
    matched at all, which the default ``DenyAll*`` rules make impossible unless a snapshot lists
    incomplete defaults; it counts as a deny), the access and where the NSG is attached."""

    nsg_id: str
    rule: str | None
    access: Access
    level: Level


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the packet is admitted, and the NSGs processed on each side, in Azure's order.

    When an address is ambiguous (overlapping VNets) and several candidate NICs are evaluated,
    the hops of every evaluated candidate are listed, in order, without repeats.
    """

    allowed: bool
    outbound: tuple[Hop, ...]
    inbound: tuple[Hop, ...]

    @property
    def denied_by(self) -> Hop | None:
        """The first hop that denied the packet, if any."""
        for hop in (*self.outbound, *self.inbound):
            if hop.access is not Access.ALLOW:
                return hop
        return None


class Step(NamedTuple):
    """One NSG on one side of a path, compiled for one endpoint: its rules in evaluation order,
    the hop to report for each rule, and the hop to report when nothing matches."""

    nsg_key: str
    rules: RuleTable
    hops: tuple[Hop, ...]
    miss: Hop


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An address resolved to one NIC IP configuration, with its NSGs in Azure's processing
    order: ``outbound`` (NIC NSG, then subnet NSG) and ``inbound`` (subnet NSG, then NIC NSG),
    each compiled for the endpoint's VNet."""

    location: IpLocation
    vnet_key: str | None
    asgs: frozenset[str]
    nic_nsg: str | None  # lower-cased NSG id
    subnet_nsg: str | None
    outbound: tuple[Step, ...]
    inbound: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class _Resolved:
    point: int
    endpoints: tuple[Endpoint, ...]


_Pair = tuple[Endpoint | None, Endpoint | None]


class NsgEvaluator:
    """Decides packets against an inventory's NSGs (optionally with some NSGs' custom rules
    replaced, to evaluate the estate *after* a plan is applied).

    Each NSG direction is compiled once per VNet context into a :class:`RuleTable` of matchers
    (integer intervals, ASG key sets) and cached, and every address is resolved once to its
    endpoints with their compiled NSG steps, so a decision costs two dictionary lookups and a
    short loop per NSG.

    ``rules_override`` maps an NSG id (any case) to the custom rules to use *instead of* that
    NSG's; its default rules stay. ``service_tag_ranges`` gives the prefixes of Azure service
    tags (``Storage``, ``Sql.WestEurope``, ...); tags used by a rule but absent there match
    nothing and are listed in :attr:`unknown_service_tags`. A rule ARM would reject (duplicate
    priority, bad port or prefix) raises :class:`NsgRuleError` when its NSG is first needed.
    """

    def __init__(
        self,
        inventory: Inventory,
        rules_override: Mapping[str, Sequence[SecurityRule]] | None = None,
        service_tag_ranges: Mapping[str, Sequence[IpNetwork]] | None = None,
    ) -> None:
        self.inventory = inventory
        self._override = {key(nsg): tuple(rules) for nsg, rules in (rules_override or {}).items()}
        self._tags = TagResolver(
            (p for v in inventory.vnets.values() for p in v.address_prefixes), service_tag_ranges
        )
        self._subnet_nsg: dict[str, str] = {}
        self._nic_nsg: dict[str, str] = {}
        self._nsg_ids: dict[str, str] = {key(n.id): n.id for n in inventory.nsgs.values()}
        for nsg_key, nsg in sorted(inventory.nsgs.items()):
            for subnet_id in nsg.subnet_ids:
                self._subnet_nsg.setdefault(key(subnet_id), nsg_key)
            for nic_id in nsg.nic_ids:
                self._nic_nsg.setdefault(key(nic_id), nsg_key)
        self._peers: dict[str, frozenset[str]] = {
            vnet_key: frozenset(
                key(p.remote_vnet_id) for p in vnet.peerings
                if (p.state or "").lower() == "connected"
            )
            for vnet_key, vnet in inventory.vnets.items()
        }
        self._spaces: dict[str | None, IntervalSet] = {}
        self._compiled: dict[tuple[str, Direction, str | None], RuleTable] = {}
        self._steps: dict[tuple[str, Direction, str | None, Level], Step] = {}
        self._resolved: dict[IpAddress, _Resolved] = {}
        self._external_cached = 0
        self._unknown_tags: set[str] = set()
        self._missing_nsgs: set[str] = set()

    # -- what the evaluator learned ----------------------------------------------------------

    @property
    def unknown_service_tags(self) -> frozenset[str]:
        """Service tags met in compiled rules that ``service_tag_ranges`` does not define.

        NSGs are compiled on first use; call :meth:`prepare` to see every tag the estate's
        NSGs use before deciding anything.
        """
        return frozenset(self._unknown_tags)

    @property
    def missing_nsgs(self) -> frozenset[str]:
        """NSGs referenced by a NIC or subnet but absent from the inventory and the overrides.
        They are evaluated as NSGs with only the default rules (what an empty NSG is)."""
        return frozenset(self._missing_nsgs)

    def prepare(self) -> None:
        """Resolve every NIC address and compile every NSG direction the estate uses (validates
        the rules, collects unknown service tags). Optional: :meth:`decide` does this lazily."""
        for nic in self.inventory.nics.values():
            for config in nic.ip_configurations:
                if config.private_ip is not None:
                    self.endpoints(config.private_ip)

    def endpoints(self, ip: IpAddress) -> tuple[Endpoint, ...]:
        """The NIC IP configurations holding ``ip`` (empty for an address outside the estate)."""
        return self._resolve(ip).endpoints

    # -- deciding --------------------------------------------------------------------------------

    def decide(self, packet: Packet) -> Verdict:
        """Would Azure's NSGs admit this (initiating) packet? See the module docstring."""
        src = self._resolved.get(packet.src_ip) or self._resolve(packet.src_ip)
        dst = self._resolved.get(packet.dst_ip) or self._resolve(packet.dst_ip)
        sources, destinations = src.endpoints, dst.endpoints
        if len(sources) <= 1 and len(destinations) <= 1:
            return self._decide_pair(packet, src.point, dst.point,
                                     sources[0] if sources else None,
                                     destinations[0] if destinations else None)
        verdicts = [self._decide_pair(packet, src.point, dst.point, source, destination)
                    for source, destination in self._pairs(sources, destinations)]
        return Verdict(
            allowed=all(v.allowed for v in verdicts),
            outbound=_unique(h for v in verdicts for h in v.outbound),
            inbound=_unique(h for v in verdicts for h in v.inbound),
        )

    def _pairs(self, sources: tuple[Endpoint, ...],
               destinations: tuple[Endpoint, ...]) -> list[_Pair]:
        """Candidate (source, destination) resolutions for overlapping address spaces:
        same VNet first, then peered VNets, then every combination (all must allow)."""
        if not sources or not destinations:
            return [(s, d) for s in (sources or (None,)) for d in (destinations or (None,))]
        combinations = [(s, d) for s in sources for d in destinations]
        same: list[_Pair] = [(s, d) for s, d in combinations
                             if s.vnet_key is not None and s.vnet_key == d.vnet_key]
        if same:
            return same
        peered: list[_Pair] = [(s, d) for s, d in combinations
                               if s.vnet_key is not None
                               and d.vnet_key in self._peers.get(s.vnet_key, ())]
        return peered or list(combinations)

    @staticmethod
    def _decide_pair(packet: Packet, src_point: int, dst_point: int,
                     source: Endpoint | None, destination: Endpoint | None) -> Verdict:
        """Outbound NSGs of the source, then inbound NSGs of the destination; the first deny
        ends the walk (Azure never hands a denied packet to the next NSG)."""
        protocol, src_port, dst_port = packet.protocol, packet.src_port, packet.dst_port
        src_asgs = source.asgs if source is not None else _NO_ASGS
        dst_asgs = destination.asgs if destination is not None else _NO_ASGS
        outbound: tuple[Hop, ...] = ()
        if source is not None:
            for step in source.outbound:
                index = first_match(step.rules, protocol, src_port, dst_port, src_point,
                                    src_asgs, dst_point, dst_asgs)
                hop = step.hops[index] if index >= 0 else step.miss
                outbound += (hop,)
                if hop.access is not Access.ALLOW:
                    return Verdict(False, outbound, ())
        inbound: tuple[Hop, ...] = ()
        if destination is not None:
            for step in destination.inbound:
                index = first_match(step.rules, protocol, src_port, dst_port, src_point,
                                    src_asgs, dst_point, dst_asgs)
                hop = step.hops[index] if index >= 0 else step.miss
                inbound += (hop,)
                if hop.access is not Access.ALLOW:
                    return Verdict(False, outbound, inbound)
        return Verdict(True, outbound, inbound)

    # -- resolving and compiling -----------------------------------------------------------------

    def _resolve(self, ip: IpAddress) -> _Resolved:
        """Resolve and cache an address. Estate addresses are always cached (bounded by the
        estate); outside addresses only up to :data:`EXTERNAL_CACHE_LIMIT`, so a benchmark
        streaming random Internet addresses does not grow memory without bound."""
        found = self._resolved.get(ip)
        if found is None:
            endpoints = tuple(self._endpoint(where) for where in self.inventory.locate_ip(ip))
            found = _Resolved(point_of(ip), endpoints)
            if endpoints or self._external_cached < EXTERNAL_CACHE_LIMIT:
                self._external_cached += not endpoints
                self._resolved[ip] = found
        return found

    def _endpoint(self, where: IpLocation) -> Endpoint:
        subnet_id = where.subnet.id if where.subnet else where.ip_configuration.subnet_id
        subnet_nsg = self._reference(where.subnet.nsg_id if where.subnet else None)
        if subnet_nsg is None and subnet_id:
            subnet_nsg = self._subnet_nsg.get(key(subnet_id))
        nic_nsg = self._reference(where.nic.nsg_id) or self._nic_nsg.get(key(where.nic.id))
        vnet_key = key(where.vnet.id) if where.vnet else None
        nic: tuple[Level, str | None] = ("nic", nic_nsg)
        subnet: tuple[Level, str | None] = ("subnet", subnet_nsg)
        return Endpoint(
            location=where,
            vnet_key=vnet_key,
            asgs=frozenset(key(a) for a in where.ip_configuration.asg_ids),
            nic_nsg=nic_nsg,
            subnet_nsg=subnet_nsg,
            outbound=tuple(self._step(nsg, Direction.OUTBOUND, vnet_key, level)
                           for level, nsg in (nic, subnet) if nsg is not None),
            inbound=tuple(self._step(nsg, Direction.INBOUND, vnet_key, level)
                          for level, nsg in (subnet, nic) if nsg is not None),
        )

    def _reference(self, nsg_id: str | None) -> str | None:
        if not nsg_id:
            return None
        nsg_key = key(nsg_id)
        self._nsg_ids.setdefault(nsg_key, nsg_id)
        return nsg_key

    def _step(self, nsg_key: str, direction: Direction, vnet_key: str | None,
              level: Level) -> Step:
        cache_key = (nsg_key, direction, vnet_key, level)
        found = self._steps.get(cache_key)
        if found is None:
            rules = self._rules(nsg_key, direction, vnet_key)
            nsg_id = self._nsg_ids[nsg_key]
            found = Step(
                nsg_key=nsg_key,
                rules=rules,
                hops=tuple(Hop(nsg_id, r.name, r.access, level) for r in rules.rules),
                miss=Hop(nsg_id, None, Access.DENY, level),
            )
            self._steps[cache_key] = found
        return found

    def _rules(self, nsg_key: str, direction: Direction,
               vnet_key: str | None) -> RuleTable:
        cache_key = (nsg_key, direction, vnet_key)
        found = self._compiled.get(cache_key)
        if found is None:
            nsg = self.inventory.nsgs.get(nsg_key)
            if nsg_key in self._override:
                custom: Sequence[SecurityRule] = self._override[nsg_key]
            elif nsg is not None:
                custom = nsg.rules
            else:
                custom = ()
                self._missing_nsgs.add(self._nsg_ids[nsg_key])
            found = compile_direction(
                self._nsg_ids[nsg_key], custom, nsg.default_rules if nsg else (), direction,
                self._virtual_network(vnet_key), self._tags, self._unknown_tags,
            )
            self._compiled[cache_key] = found
        return found

    def _virtual_network(self, vnet_key: str | None) -> IntervalSet:
        """The ``VirtualNetwork`` tag for NICs of one VNet: its space, its Connected peers'
        spaces, and the host VIP. A NIC whose subnet is missing from the snapshot gets only the
        host VIP (its VNet's space is unknown)."""
        space = self._spaces.get(vnet_key)
        if space is None:
            networks: list[IpNetwork] = [ip_network(AZURE_HOST_VIP)]
            vnet = self.inventory.vnets.get(vnet_key) if vnet_key else None
            if vnet is not None and vnet_key is not None:
                networks.extend(vnet.address_prefixes)
                for peer_key in sorted(self._peers.get(vnet_key, ())):
                    peer = self.inventory.vnets.get(peer_key)
                    if peer is not None:
                        networks.extend(peer.address_prefixes)
            space = IntervalSet.of_networks(networks)
            self._spaces[vnet_key] = space
        return space


def _unique(hops: Iterable[Hop]) -> tuple[Hop, ...]:
    return tuple(dict.fromkeys(hops))
