"""Plain-text rendering for the terminal: aligned tables and the estate summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from shared.domain.arm_id import key
from shared.domain.assets import LoadReport
from shared.domain.inventory import Inventory

_LABELS = {
    "subscriptions": "Subscriptions",
    "resource_groups": "Resource groups",
    "vnets": "VNets",
    "subnets": "Subnets",
    "nics": "NICs",
    "asgs": "ASGs",
    "nsgs": "NSGs",
    "vms": "VMs",
    "private_endpoints": "Private endpoints",
    "public_ips": "Public IPs",
}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned text table; numbers are right-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int) for row in rows) and bool(rows)
               for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric,
                                                                         strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def counts_table(counts: dict[str, int]) -> str:
    return table(["Kind", "Count"], [[_LABELS.get(k, k), v] for k, v in counts.items()])


def load_problems(report: LoadReport) -> str:
    """Skipped rows, unknown types and dangling references, or an empty string when clean."""
    out: list[str] = []
    if report.skipped:
        out.append(f"Skipped {len(report.skipped)} malformed resource(s):")
        out.extend(f"  - {s.resource_id} ({s.type or 'unknown type'}): {s.field} {s.reason}"
                   for s in report.skipped)
    if report.unknown_types:
        total = sum(n for _, n in report.unknown_types)
        out.append(f"Ignored {total} resource(s) of types zts does not model:")
        out.extend(f"  - {t}: {n}" for t, n in report.unknown_types)
    if report.dangling:
        out.append(f"{len(report.dangling)} reference(s) to resources not in the snapshot:")
        out.extend(f"  - {d.resource_id} {d.field} -> {d.target_id}" for d in report.dangling[:20])
        if len(report.dangling) > 20:
            out.append(f"  ... and {len(report.dangling) - 20} more")
    if report.duplicates:
        out.append(f"{report.duplicates} duplicate row(s): the last copy of each was kept")
    return "\n".join(out)


def estate_summary(inventory: Inventory) -> str:
    """One row per subscription, then VNets with their peerings and the ASG memberships."""
    per_sub: dict[str, Counter[str]] = {}
    for kind, assets in (("vnets", inventory.vnets), ("subnets", inventory.subnets),
                         ("nics", inventory.nics), ("vms", inventory.vms),
                         ("nsgs", inventory.nsgs), ("asgs", inventory.asgs),
                         ("pes", inventory.private_endpoints)):
        for asset in assets.values():
            per_sub.setdefault(asset.subscription_id, Counter())[kind] += 1
    sub_rows = [
        [inventory.subscription_name(sub), c["vnets"], c["subnets"], c["nics"], c["vms"],
         c["nsgs"], c["asgs"], c["pes"]]
        for sub, c in sorted(per_sub.items(), key=lambda i: inventory.subscription_name(i[0]))
    ]
    vnet_rows = []
    for vnet in sorted(inventory.vnets.values(), key=lambda v: (v.name, key(v.id))):
        peers = sorted(inventory.vnets[key(p.remote_vnet_id)].name
                       if key(p.remote_vnet_id) in inventory.vnets else p.remote_vnet_id
                       for p in vnet.peerings)
        vnet_rows.append([vnet.name, inventory.subscription_name(vnet.subscription_id),
                          ", ".join(str(p) for p in vnet.address_prefixes), len(vnet.subnet_ids),
                          ", ".join(peers) or "-"])
    asg_rows = [
        [asg.name, inventory.subscription_name(asg.subscription_id),
         len(inventory.asg_members(asg.id))]
        for asg in sorted(inventory.asgs.values(), key=lambda a: (a.name, key(a.id)))
    ]
    nsg_rows = [
        [nsg.name, len(inventory.nsg_subnets(nsg.id)), len(inventory.nsg_nics(nsg.id)),
         len(nsg.rules)]
        for nsg in sorted(inventory.nsgs.values(), key=lambda n: (n.name, key(n.id)))
    ]
    return "\n\n".join([
        table(["Subscription", "VNets", "Subnets", "NICs", "VMs", "NSGs", "ASGs", "PEs"], sub_rows),
        table(["VNet", "Subscription", "Address space", "Subnets", "Peered with"], vnet_rows),
        table(["ASG", "Subscription", "Members"], asg_rows),
        table(["NSG", "Subnets", "NICs", "Custom rules"], nsg_rows),
    ])
