"""Time-respecting, any-depth reachability, and reachability by policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.analytics.blast_radius import Edge, TemporalGraph, blast_radius_finding, policy_reach
from shared.analytics.detections import Origin
from shared.policy.evaluator import NsgEvaluator
from tests.analytics.conftest import Sample

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_hop_counts_only_after_the_previous_one() -> None:
    graph = TemporalGraph([
        Edge("a", "b", t(10), t(10)),
        Edge("b", "c", t(5), t(5)),     # before b was reached: does not count
        Edge("b", "d", t(12), t(12)),
        Edge("d", "c", t(20), t(20)),   # c is reached later, through d
    ])
    reached = {r.ip: r for r in graph.reach("a", t(0))}
    assert set(reached) == {"b", "c", "d"}
    assert (reached["c"].hops, reached["c"].first_seen, reached["c"].via) == (3, t(20), "d")


def test_the_last_recorded_start_is_used_when_the_first_is_too_early() -> None:
    graph = TemporalGraph([Edge("a", "b", t(1), t(1)), Edge("b", "c", t(0), t(9))])
    (b, c) = graph.reach("a", t(0))
    assert (c.ip, c.first_seen) == ("c", t(9))


def test_origin_time_and_depth_beyond_four_hops() -> None:
    chain = [Edge(f"h{i}", f"h{i + 1}", t(i + 1), t(i + 1)) for i in range(12)]
    graph = TemporalGraph([*chain, Edge("h0", "x", t(0.5), t(0.5))])
    reached = graph.reach("h0", t(0.75))  # compromised after the h0 -> x contact
    assert [r.ip for r in reached] == [f"h{i}" for i in range(1, 13)]
    assert reached[-1].hops == 12
    assert graph.reach("h5", t(100)) == []


def test_earliest_arrival_is_kept_when_several_paths_exist() -> None:
    graph = TemporalGraph([
        Edge("a", "b", t(1), t(1)), Edge("b", "c", t(2), t(2)),
        Edge("a", "c", t(30), t(30)),
    ])
    c = next(r for r in graph.reach("a", t(0)) if r.ip == "c")
    assert (c.hops, c.first_seen) == (2, t(2))


def test_policy_reach_on_the_sample(sample: Sample) -> None:
    evaluator = NsgEvaluator(sample.inventory)
    reach = policy_reach(evaluator, "10.10.1.4", (22, 445, 3389), max_hosts=1000)
    assert reach.computed
    hosts = dict(reach.hosts)
    assert hosts["10.10.2.4"] == 1  # same VNet, AllowVnetInBound
    assert all(h >= 1 for h in hosts.values())
    assert "10.10.1.4" not in hosts
    too_big = policy_reach(evaluator, "10.10.1.4", (22,), max_hosts=3)
    assert not too_big.computed and "max_policy_hosts" in too_big.reason
    outside = policy_reach(evaluator, "192.0.2.1", (22,), max_hosts=1000)
    assert not outside.computed


def test_finding_shows_observed_and_policy_separately(sample: Sample) -> None:
    graph = TemporalGraph([Edge("10.10.1.4", "10.10.2.4", t(1), t(1))])
    origin = Origin("10.10.1.4", t(0), ("named with --origin",))
    policy = policy_reach(NsgEvaluator(sample.inventory), origin.ip, (445,), 1000)
    finding = blast_radius_finding(origin, graph.reach(origin.ip, origin.since), policy,
                                   sample.inventory)
    ev = finding.evidence
    assert ev["origin"] == "10.10.1.4"
    assert ev["reached"] == [{"ip": "10.10.2.4", "hops": 1, "first_seen":
                              "2026-11-02T09:01:00.000Z", "via": "10.10.1.4"}]
    assert ev["reachable_by_policy"]["computed"] is True
    assert "10.10.2.4" not in ev["reachable_by_policy"]["not_observed"]
    assert finding.resource_id.endswith("/virtualMachines/payroll-web-01")


def _scan_reach(edges: list[Edge], origin: str, since: datetime) -> list[tuple[Any, ...]]:
    """The reference: every edge moment once, in (time, source, destination) order."""
    moments = sorted({(e.first, e.src, e.dst) for e in edges}
                     | {(e.last, e.src, e.dst) for e in edges if e.last > e.first})
    arrival, hops, via = {origin: since}, {origin: 0}, {}
    for when, src, dst in moments:
        if when < since or src not in arrival or when < arrival[src] or dst in arrival:
            continue
        arrival[dst], hops[dst], via[dst] = when, hops[src] + 1, src
    found = [(ip, hops[ip], arrival[ip], via[ip]) for ip in arrival if ip != origin]
    return sorted(found, key=lambda r: (r[2], r[1], r[0]))


def test_reach_matches_the_moment_by_moment_scan_including_ties() -> None:
    """Many hosts, few distinct moments (so that hops at the same moment are common): the
    heap search gives exactly the scan's arrivals, hop counts and previous hosts."""
    rng = random.Random(5)
    for _ in range(300):
        hosts = [f"10.0.{rng.randrange(3)}.{rng.randrange(1, 12)}" for _ in range(9)]
        edges = []
        for _ in range(rng.randrange(1, 40)):
            src, dst = rng.sample(hosts, 2)
            if src == dst:
                continue
            first = t(rng.randrange(8))
            last = first + timedelta(minutes=rng.choice((0, 0, 1, 3)))
            edges.append(Edge(src, dst, first, last))
        graph = TemporalGraph(edges)
        for origin in set(hosts):
            since = t(rng.randrange(-1, 6))
            got = [(r.ip, r.hops, r.first_seen, r.via) for r in graph.reach(origin, since)]
            want = _scan_reach(edges, origin, since)
            assert sorted(got, key=lambda r: (r[2], r[1], r[0])) == want
