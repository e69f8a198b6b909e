"""Blast radius: what a compromised host reached (observed) and could reach (by policy).

**Observed** reachability is time-respecting and of any depth. The edges are the observed,
allowed connections between private hosts; each aggregated row knows two moments a connection
was opened (its first and last start in the interval). A hop ``u -> v`` at time ``t`` counts
only if ``u`` was already reached at ``t`` (``t >= arrival(u)``). The answer is the one of
processing every edge moment once in ``(time, source, destination)`` order (a "foremost journey"
search): the earliest arrival at every host, with the hop count and the previous host of that
earliest path. It is computed without visiting every moment: hosts and moments are kept as
integers (host ranks in address-text order, epoch microseconds), each host pair holds its sorted
moments, and from each reached host only the first usable moment of each outgoing pair enters a
heap ordered like that scan - so the work grows with the pairs around the reached hosts, not with
the moments of the whole window, and many origins stay cheap. Using only the recorded first/last
moments is sound - every counted hop really happened after the previous one - and at worst late
by part of one processing interval, which is why the local engine defaults to 10-minute
intervals. Traffic Analytics' published query instead self-joins the pairs twice (at most four
hops) and ignores time order.

An engine that can reduce the edge rows itself (:class:`EdgeMomentSource`, the local DuckDB
engine) hands over one row per host pair with its distinct moments instead of one row per pair
and interval.

**Reachable by policy** asks the independent NSG evaluator (shared.policy.evaluator) whether the
origin could open a TCP connection to each estate host on a set of probe ports (remote-access,
file-sharing, database and web ports by default), then from those hosts onwards: breadth-first,
so ``hops`` is the fewest policy hops. Only hosts Azure could route to are considered (same VNet
or directly peered). The cost grows with the square of the estate, so above
``max_policy_hosts`` addresses it is skipped and the evidence says so rather than showing an
empty set.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any, Protocol, runtime_checkable

from shared.analytics.detections import EPOCH, Origin, describe_host, iso
from shared.analytics.query import Row, Window
from shared.domain.arm_id import key
from shared.domain.findings import Finding
from shared.domain.inventory import Inventory
from shared.policy.evaluator import NsgEvaluator, Packet


@dataclass(frozen=True, slots=True)
class Edge:
    """An observed, allowed connection opened at ``first`` and again at ``last``."""

    src: str
    dst: str
    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True)
class Reached:
    ip: str
    hops: int
    first_seen: datetime
    via: str  # the previous host on the earliest path


def edges_from_rows(rows: Iterable[Row]) -> list[Edge]:
    out = []
    for row in rows:
        src, dst = row.get("SrcIp"), row.get("DestIp")
        first, last = row.get("FirstContact"), row.get("LastContact")
        if not (isinstance(src, str) and isinstance(dst, str) and src and dst and src != dst):
            continue
        if not isinstance(first, datetime):
            continue
        out.append(Edge(src, dst, first, last if isinstance(last, datetime) else first))
    return out


@dataclass(frozen=True, slots=True)
class EdgeMoments:
    """The blast-radius edge query's rows reduced to what reachability reads: for each
    ``(source, destination)`` host pair, the distinct moments a connection was opened, in epoch
    microseconds, ascending. ``rows`` is how many rows the query itself returned."""

    pairs: Sequence[tuple[str, str, Sequence[int]]]
    rows: int


@runtime_checkable
class EdgeMomentSource(Protocol):
    """An engine that runs the blast-radius edge query and reduces its rows itself (as
    :func:`edges_from_rows` + :class:`TemporalGraph` would: rows with an empty or equal source
    and destination, or no first contact, left out; a missing last contact is the first)."""

    def edge_moments(self, query: str, window: Window) -> EdgeMoments: ...


_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    """Epoch microseconds (naive datetimes are UTC, as everywhere in the analytics)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - EPOCH) // _MICROSECOND


class TemporalGraph:
    """Edge moments grouped per host pair once, then searched from any number of origins."""

    def __init__(self, edges: Iterable[Edge] = ()) -> None:
        moments: dict[tuple[str, str], set[int]] = {}
        for edge in edges:
            times = moments.setdefault((edge.src, edge.dst), set())
            times.add(_micros(edge.first))
            if edge.last > edge.first:
                times.add(_micros(edge.last))
        self._index(((src, dst, sorted(times)) for (src, dst), times in moments.items()))

    @classmethod
    def from_moments(cls, moments: EdgeMoments) -> TemporalGraph:
        """The graph of an engine's reduced edges (moments already distinct and sorted)."""
        graph = cls.__new__(cls)
        graph._index(moments.pairs)
        return graph

    def _index(self, pairs: Iterable[tuple[str, str, Sequence[int]]]) -> None:
        kept = [(src, dst, times) for src, dst, times in pairs if times]
        # ranks in text order, so that ties at one moment are broken as the scan breaks them
        self._hosts = sorted({src for src, _, _ in kept} | {dst for _, dst, _ in kept})
        rank = {host: i for i, host in enumerate(self._hosts)}
        self._out: list[list[tuple[int, Sequence[int]]]] = [[] for _ in self._hosts]
        for src, dst, times in kept:
            self._out[rank[src]].append((rank[dst], times))
        self._rank = rank
        self._moments = sum(len(times) for _, _, times in kept)

    def __len__(self) -> int:
        return self._moments

    def reach(self, origin: str, since: datetime) -> list[Reached]:
        """Hosts reached from ``origin`` by hops opened at or after ``since`` and each after
        the previous host was reached; ordered by first contact, then address.

        The same answer as taking every moment ``(t, u, v)`` at or after ``since`` in
        ``(t, u, v)`` order and reaching ``v`` when ``u`` is already reached and ``v`` is not:
        a moment of ``u -> v`` is usable once ``u`` is reached, that is from the moment that
        reached ``u`` on (a moment at that same time counts only if it comes after it in that
        order, i.e. if ``u`` ranks after the host that reached it)."""
        start = self._rank.get(origin)
        if start is None:
            return []
        since_us = _micros(since)
        arrival = {start: since_us}
        hops = {start: 0}
        via: dict[int, int] = {}
        heap: list[tuple[int, int, int]] = []
        out = self._out

        def offer(host: int, at: int, before: int) -> None:
            for dst, times in out[host]:
                if dst in arrival:
                    continue
                i = bisect_left(times, at)
                if i < len(times) and times[i] == at and before > host:
                    i += 1  # that moment came before the one that reached ``host``
                if i < len(times):
                    heapq.heappush(heap, (times[i], host, dst))

        offer(start, since_us, -1)
        while heap:
            when, src, dst = heapq.heappop(heap)
            if dst in arrival:
                continue
            arrival[dst] = when
            hops[dst] = hops[src] + 1
            via[dst] = src
            offer(dst, when, src)
        hosts = self._hosts
        found = [Reached(hosts[h], hops[h], EPOCH + timedelta(microseconds=arrival[h]),
                         hosts[via[h]]) for h in arrival if h != start]
        return sorted(found, key=lambda r: (r.first_seen, r.hops, _ip_order(r.ip)))


def _ip_order(ip: str) -> tuple[int, int | str]:
    try:
        return (0, int(ip_address(ip)))
    except ValueError:
        return (1, ip)


@dataclass(frozen=True, slots=True)
class PolicyReach:
    computed: bool
    reason: str = ""
    hosts: tuple[tuple[str, int], ...] = ()  # (ip, fewest policy hops)
    ports: tuple[int, ...] = ()


def _routable(inventory: Inventory, peers: Mapping[str, frozenset[str]], a: str, b: str,
              vnets: Mapping[str, str]) -> bool:
    va, vb = vnets.get(a), vnets.get(b)
    return va is not None and vb is not None and (va == vb or vb in peers.get(va, frozenset()))


def policy_reach(evaluator: NsgEvaluator, origin: str, ports: Sequence[int],
                 max_hosts: int) -> PolicyReach:
    """Hosts the NSGs would let ``origin`` reach over TCP on ``ports``, any number of hops."""
    inventory = evaluator.inventory
    vnets: dict[str, str] = {}
    for where in inventory.ip_locations():
        if where.vnet is not None:
            vnets.setdefault(str(where.ip), key(where.vnet.id))
    if origin not in vnets:
        return PolicyReach(False, "the origin is not an address of the estate", (), tuple(ports))
    if len(vnets) > max_hosts:
        return PolicyReach(False, f"the estate has {len(vnets)} addresses, more than "
                                  f"blast_radius.max_policy_hosts ({max_hosts})", (), tuple(ports))
    peers = {key(v.id): frozenset(key(p.remote_vnet_id) for p in v.peerings
                                  if (p.state or "").lower() == "connected")
             for v in inventory.vnets.values()}
    hosts = sorted(vnets, key=_ip_order)
    depth = {origin: 0}
    frontier = [origin]
    while frontier:
        following = []
        for src in frontier:
            for dst in hosts:
                if dst in depth or not _routable(inventory, peers, src, dst, vnets):
                    continue
                if any(evaluator.decide(Packet.of(src, dst, port)).allowed for port in ports):
                    depth[dst] = depth[src] + 1
                    following.append(dst)
        frontier = following
    found = tuple(sorted(((ip, hops) for ip, hops in depth.items() if ip != origin),
                         key=lambda item: (item[1], _ip_order(item[0]))))
    return PolicyReach(True, "", found, tuple(ports))


def blast_radius_finding(origin: Origin, reached: Sequence[Reached], policy: PolicyReach | None,
                         inventory: Inventory | None) -> Finding:
    """One finding per origin. ``reached`` is the observed, time-respecting reach."""
    host = describe_host(origin.ip, inventory)
    observed = {r.ip for r in reached}
    evidence: dict[str, Any] = {
        "origin": origin.ip,
        "reached": [{"ip": r.ip, "hops": r.hops, "first_seen": iso(r.first_seen), "via": r.via}
                    for r in reached],
        "since": iso(origin.since),
        "reasons": list(origin.reasons),
        "max_hops": max((r.hops for r in reached), default=0),
    }
    if policy is None:
        evidence["reachable_by_policy"] = {"computed": False,
                                           "reason": "no inventory to evaluate NSGs against"}
    elif not policy.computed:
        evidence["reachable_by_policy"] = {"computed": False, "reason": policy.reason,
                                           "ports": list(policy.ports)}
    else:
        evidence["reachable_by_policy"] = {
            "computed": True, "ports": list(policy.ports),
            "hosts": [{"ip": ip, "hops": hops} for ip, hops in policy.hosts],
            "not_observed": sorted((ip for ip, _ in policy.hosts if ip not in observed),
                                   key=_ip_order),
            "observed_not_by_policy": sorted(observed - {ip for ip, _ in policy.hosts},
                                             key=_ip_order),
        }
    policy_text = ""
    if policy is not None and policy.computed:
        policy_text = f"; {len(policy.hosts)} reachable by policy"
    summary = (f"{host.label} compromised since {iso(origin.since)} "
               f"({'; '.join(origin.reasons)}): reached {len(reached)} host(s) in up to "
               f"{evidence['max_hops']} hop(s){policy_text}")
    severity = "high" if reached else "medium"
    return Finding("blast_radius", severity, summary, host.resource_id, origin.since or EPOCH,
                   evidence, (origin.ip,))
