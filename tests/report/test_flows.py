"""NTANetAnalytics-shaped rows -> observed flows: both value spellings, public-IP lists, status
rows, rows that cannot be used, and de-duplication of flows logged at both ends."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.report.flows import ObservedFlow, observed_flows_from_rows
from shared.report.model import dedupe

ROW = {
    "SubType": "FlowLog", "FlowType": "InterVNet", "SrcIp": "10.10.1.4", "DestIp": "10.20.2.5",
    "DestPort": 1433, "L4Protocol": "T", "FlowDirection": "Outbound", "FlowStatus": "Allowed",
    "AllowedOutFlows": 42, "BytesSrcToDest": 350000, "BytesDestToSrc": 2100000,
    "FlowStartTime": "2025-03-01T09:03:11Z", "FlowEndTime": "2025-03-01T09:57:40Z",
    "SrcPublicIps": "", "DestPublicIps": "",
}


def test_reference_row() -> None:
    read = observed_flows_from_rows([ROW])
    assert read.flows == [ObservedFlow(
        "10.10.1.4", "10.20.2.5", 1433, "tcp", 42, 2_450_000, allowed=True,
        direction="outbound", flow_type="InterVNet", first_seen="2025-03-01T09:03:11.000Z",
        last_seen="2025-03-01T09:57:40.000Z")]
    assert read.skipped == {}


def test_legacy_spellings_and_datetimes() -> None:
    row = {**ROW, "FlowStatus": "D", "FlowDirection": "I", "L4Protocol": "UDP",
           "AllowedOutFlows": 0, "DeniedInFlows": 3,
           "FlowStartTime": datetime(2025, 3, 1, 9, 0, tzinfo=UTC), "FlowEndTime": None}
    (flow,) = observed_flows_from_rows([row]).flows
    assert (flow.allowed, flow.direction, flow.protocol, flow.flows) == (False, "inbound", "udp",
                                                                         3)
    assert flow.first_seen == flow.last_seen == "2025-03-01T09:00:00.000Z"


def test_public_ip_lists_become_one_flow_each() -> None:
    row = {**ROW, "FlowType": "ExternalPublic", "SrcIp": "", "DestIp": "10.10.1.4",
           "DestPort": 443, "FlowDirection": "Inbound", "AllowedOutFlows": 0,
           "AllowedInFlows": 4,
           "SrcPublicIps": "203.0.113.10|3|3|12|10|2400|9800 198.51.100.7|1|0|2|0|120|0"}
    flows = observed_flows_from_rows([row]).flows
    assert [(f.src_ip, f.flows, f.bytes) for f in flows] == [
        ("203.0.113.10", 3, 12200), ("198.51.100.7", 1, 120)]
    single = {**row, "SrcPublicIps": "203.0.113.10|3|3|12|10|2400|9800"}
    (flow,) = observed_flows_from_rows([single]).flows
    assert (flow.flows, flow.bytes) == (4, 2_450_000)  # the row's own totals


def test_status_rows_are_ignored_and_unusable_rows_counted() -> None:
    rows = [
        {**ROW, "SubType": "StatusMessage"},
        {**ROW, "SrcIp": "", "SrcPublicIps": ""},
        {**ROW, "FlowStatus": "", "AllowedOutFlows": 0},
        {**ROW, "DestPort": 70000},
        {key: value for key, value in ROW.items() if key != "SubType"},  # exports may lack it
    ]
    read = observed_flows_from_rows(rows)
    assert len(read.flows) == 1
    assert read.skipped == {"no source or destination address": 1,
                            "no FlowStatus and no flow counts": 1, "DestPort out of range": 1}


def test_flows_logged_at_both_ends_count_once_with_the_destination_verdict() -> None:
    out = ObservedFlow("10.0.0.4", "10.0.1.4", 22, "tcp", 5, 500, allowed=True,
                       direction="outbound")
    into = ObservedFlow("10.0.0.4", "10.0.1.4", 22, "tcp", 5, 500, allowed=False,
                        direction="inbound")
    only_out = ObservedFlow("10.0.0.4", "203.0.113.9", 443, "tcp", 1, 10, allowed=True,
                            direction="outbound")
    assert dedupe([out, into, only_out]) == [into, only_out]
