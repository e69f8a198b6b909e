"""Observed flows, as the report needs them, from NTANetAnalytics-shaped rows (pure).

One :class:`ObservedFlow` is one source -> destination, destination port and protocol with its
flow and byte counts and the verdict of the NSG where it was captured. Rows come from Traffic
Analytics (Log Analytics exports, or the local enricher over raw VNet flow logs): column names
and value spellings as in reference/azure-formats.md section 1.2. Both spellings of the
enumerations are accepted (``Allowed``/``A``, ``Inbound``/``I``, ``T``/``TCP``).

The public side of ``AzurePublic``/``ExternalPublic``/``MaliciousFlow`` rows is blank in
``SrcIp``/``DestIp`` and listed in ``SrcPublicIps``/``DestPublicIps``
(``ip|started|ended|pkts out|pkts in|bytes out|bytes in``, space-separated); each listed address
becomes its own flow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

PROTOCOLS: Final = {"t": "tcp", "tcp": "tcp", "6": "tcp", "u": "udp", "udp": "udp", "17": "udp",
                    "i": "icmp", "icmp": "icmp", "1": "icmp"}
_ALLOWED: Final = frozenset({"allowed", "a"})
_DENIED: Final = frozenset({"denied", "d"})
_DIRECTIONS: Final = {"inbound": "inbound", "i": "inbound", "outbound": "outbound",
                      "o": "outbound"}
_FLOW_COUNTS: Final = ("AllowedInFlows", "DeniedInFlows", "AllowedOutFlows", "DeniedOutFlows")


@dataclass(frozen=True, slots=True)
class ObservedFlow:
    """Traffic seen from ``src_ip`` to ``dst_ip`` on ``dest_port``/``protocol``.

    ``allowed`` is the verdict of the NSG where the flow was captured; ``direction`` says where
    that was (``inbound``: at the destination's NIC, ``outbound``: at the source's), so a flow
    logged at both ends is counted once. ``flow_type`` is Traffic Analytics' FlowType when
    known (``AzurePublic`` puts the public side in the Azure bucket of the map).
    """

    src_ip: str
    dst_ip: str
    dest_port: int
    protocol: str  # tcp | udp | icmp | the row's value, lower-cased
    flows: int
    bytes: int
    allowed: bool
    direction: str = ""  # inbound | outbound | "" (unknown)
    flow_type: str = ""
    first_seen: str | None = None  # ISO 8601 UTC
    last_seen: str | None = None


@dataclass
class FlowRead:
    """Flows built from rows, and the rows that could not be used (counted by reason)."""

    flows: list[ObservedFlow] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _text(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    return "" if value is None else str(value).strip()


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 2**63:  # noqa: PLR0124
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip() or "0"))
        except (ValueError, OverflowError):
            return 0
    return 0


def iso_time(value: Any) -> str | None:
    """A datetime (or an ISO string) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``; None when not a time."""
    if isinstance(value, str) and value.strip():
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def protocol_name(value: Any) -> str:
    text = str(value or "").strip().lower()
    return PROTOCOLS.get(text, text or "unknown")


def _public_entries(text: str) -> list[tuple[str, int, int]]:
    """``ip|started|ended|pkts|pkts|bytes|bytes`` entries -> (ip, flows started, bytes)."""
    out = []
    for entry in text.split():
        fields = entry.split("|")
        if not fields[0]:
            continue
        started = _int(fields[1]) if len(fields) > 1 else 0
        moved = sum(_int(f) for f in fields[5:7]) if len(fields) >= 7 else 0
        out.append((fields[0], started, moved))
    return out


def observed_flows_from_rows(rows: Iterable[Mapping[str, Any]]) -> FlowRead:
    """NTANetAnalytics-shaped rows -> observed flows. Status rows (``SubType`` other than
    ``FlowLog``) are ignored; rows with no usable address or verdict are counted as skipped."""
    read = FlowRead()
    for row in rows:
        sub_type = _text(row, "SubType")
        if sub_type and sub_type.lower() != "flowlog":
            continue
        status = _text(row, "FlowStatus").lower()
        counts = [_int(row.get(name)) for name in _FLOW_COUNTS]
        if status in _ALLOWED:
            allowed = True
        elif status in _DENIED:
            allowed = False
        elif any(counts):
            allowed = bool(counts[0] or counts[2])
        else:
            read.skip("no FlowStatus and no flow counts")
            continue
        port = _int(row.get("DestPort"))
        if not 0 <= port <= 65535:
            read.skip("DestPort out of range")
            continue
        total = sum(counts) or 1
        moved = _int(row.get("BytesSrcToDest")) + _int(row.get("BytesDestToSrc"))
        direction = _DIRECTIONS.get(_text(row, "FlowDirection").lower(), "")
        protocol = protocol_name(row.get("L4Protocol"))
        flow_type = _text(row, "FlowType")
        first = iso_time(row.get("FlowStartTime"))
        last = iso_time(row.get("FlowEndTime")) or first
        sources = _side(row, "SrcIp", "SrcPublicIps", total, moved)
        targets = _side(row, "DestIp", "DestPublicIps", total, moved)
        if not sources or not targets:
            read.skip("no source or destination address")
            continue
        several = len(sources) * len(targets) > 1
        for src, src_flows, src_bytes in sources:
            for dst, dst_flows, dst_bytes in targets:
                flows, size = (min(src_flows, dst_flows), min(src_bytes, dst_bytes)) if \
                    several else (total, moved)
                read.flows.append(ObservedFlow(src, dst, port, protocol, max(flows, 1), size,
                                               allowed, direction, flow_type, first, last))
    return read


def _side(row: Mapping[str, Any], ip_column: str, public_column: str, total: int,
          moved: int) -> list[tuple[str, int, int]]:
    ip = _text(row, ip_column)
    if ip:
        return [(ip, total, moved)]
    return [(address, started or total, size)
            for address, started, size in _public_entries(_text(row, public_column))]
