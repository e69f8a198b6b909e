"""The `zts` command end to end: real files, real Azurite, the console entry point."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.cli import main
from shared.local.azurite import Azurite
from shared.sample.estate import ESTATE_JSON_PATH


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_inventory_json_counts_of_the_sample_estate() -> None:
    code, out, _ = run("inventory", "--snapshot", str(ESTATE_JSON_PATH), "--json")

    assert code == 0
    result = json.loads(out)
    assert set(result["counts"]) == {
        "subscriptions", "resource_groups", "vnets", "subnets", "nics", "asgs", "nsgs", "vms",
        "private_endpoints", "public_ips",
    }
    counts = result["counts"]
    assert counts["subscriptions"] == 4
    assert counts["vnets"] == 4
    assert counts["asgs"] == 3  # Web, Logic, SAP
    assert counts["private_endpoints"] >= 1
    assert counts["nics"] > counts["vms"]  # private endpoint NICs have no VM
    assert result["skipped"] == []


def test_malformed_nic_is_reported_and_the_rest_loads(tmp_path: Path) -> None:
    document = json.loads(ESTATE_JSON_PATH.read_text())
    rows: list[dict[str, Any]] = copy.deepcopy(document["data"])
    nic = next(r for r in rows if r["type"] == "microsoft.network/networkinterfaces")
    nic["properties"]["ipConfigurations"][0]["properties"]["subnet"] = "not-a-reference"
    snapshot = tmp_path / "broken.json"
    snapshot.write_text(json.dumps(rows))

    code, out, _ = run("inventory", "--snapshot", str(snapshot), "--json")
    _, good, _ = run("inventory", "--snapshot", str(ESTATE_JSON_PATH), "--json")

    assert code == 0
    result = json.loads(out)
    assert result["skipped"] == [{
        "id": nic["id"], "type": "microsoft.network/networkinterfaces",
        "field": "ipConfigurations[0].subnet", "reason": "must be an object, got str",
    }]
    assert result["counts"]["nics"] == json.loads(good)["counts"]["nics"] - 1
    strict_code, _, _ = run("inventory", "--snapshot", str(snapshot), "--strict")
    assert strict_code == 1


def test_human_output_lists_counts_and_problems(tmp_path: Path) -> None:
    snapshot = tmp_path / "s.json"
    site = {"id": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Web/sites/a",
            "type": "Microsoft.Web/sites"}
    snapshot.write_text(json.dumps({"data": [site, {"name": "no id"}]}))
    code, out, err = run("inventory", "--snapshot", str(snapshot))

    assert code == 0
    assert "NICs" in out and "Subscriptions" in out
    assert "Skipped 1 malformed resource(s)" in err
    assert "microsoft.web/sites: 1" in err


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
    ('{"rows": []}', 'must have a "data"'),
    ("42", "must be a JSON array or object"),
])
def test_unusable_snapshot_exits_2_with_reason(tmp_path: Path, content: str,
                                               message: str) -> None:
    snapshot = tmp_path / "bad.json"
    snapshot.write_text(content)
    code, out, err = run("inventory", "--snapshot", str(snapshot))
    assert code == 2
    assert out == ""
    assert message in err


def test_missing_file_and_usage_errors_exit_2(tmp_path: Path) -> None:
    code, _, err = run("inventory", "--snapshot", str(tmp_path / "nope.json"))
    assert code == 2
    assert "cannot read snapshot" in err
    assert run("inventory")[0] == 2
    assert run("frobnicate")[0] == 2


def test_demo_persists_the_sample_and_writes_flow_logs(azurite: Azurite, tmp_path: Path) -> None:
    del azurite  # the demo starts its own emulator; this fixture only marks the test `azurite`
    code, out, err = run("demo", "--out", str(tmp_path))

    assert code == 0, err
    assert "Payroll-Prod" in out and "ERP-Prod" in out and "Analytics" in out
    assert "Read back from Table Storage: identical counts" in out
    assert "planted incidents" in out
    assert (tmp_path / "estate.json").exists()
    assert list((tmp_path / "flowlogs").rglob("PT1H.json"))


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "zts"
    result = subprocess.run([str(script), "inventory", "--snapshot", str(ESTATE_JSON_PATH),
                             "--json"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["vnets"] == 4


POLICY = ESTATE_JSON_PATH.parent / "policy.yaml"


def test_groups_json_lists_sorted_ips_and_nic_ids() -> None:
    code, out, _ = run("groups", "--policy", str(POLICY), "--snapshot", str(ESTATE_JSON_PATH),
                       "--json")
    assert code == 0
    groups = json.loads(out)["groups"]
    assert groups["web"]["ips"] == ["10.10.1.4", "10.10.1.5", "10.10.1.6", "10.10.1.7"]
    assert all(n.startswith("/subscriptions/") for n in groups["web"]["nics"])
    assert groups["dns"]["ips"] == ["10.0.1.4", "10.0.1.5"]


def test_plan_exit_codes(tmp_path: Path) -> None:
    code, out, _ = run("plan", "--policy", str(POLICY), "--snapshot", str(ESTATE_JSON_PATH))
    assert code == 0 and "Plan: 28 to add" in out
    conflict = tmp_path / "conflict.yaml"
    conflict.write_text(POLICY.read_text().replace("band: [1000, 2999]", "band: [100, 3999]"))
    code, out, _ = run("plan", "--policy", str(conflict), "--snapshot", str(ESTATE_JSON_PATH),
                       "--json")
    assert code == 1 and json.loads(out)["errors"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: zts/v1\nrules:\n  - {name: x, priority: 1, from: nowhere, "
                      "to: web, ports: [70000], protocol: tcp, action: allow}\n")
    code, out, err = run("plan", "--policy", str(broken), "--snapshot", str(ESTATE_JSON_PATH))
    assert code == 2 and out == ""
    assert "broken.yaml:3" in err and "70000" in err and "nowhere" in err


def test_policy_schema_is_json_schema() -> None:
    code, out, _ = run("policy", "schema")
    schema = json.loads(out)
    assert code == 0
    assert schema["$schema"].startswith("https://json-schema.org/draft/2020-12")
    assert "rules" in schema["properties"] and "groups" in schema["properties"]


def test_selectors_naming_what_the_snapshot_lacks_are_invalid_input(tmp_path: Path) -> None:
    """A name or ARM id that matches nothing, or a name that matches two things, makes the
    policy invalid against this snapshot: exit 2, each problem with its file and line."""
    document = json.loads(ESTATE_JSON_PATH.read_text())
    estate = document["data"] if isinstance(document, dict) else document
    vnet_id = next(r["id"] for r in estate if r["type"] == "microsoft.network/virtualnetworks")
    twice = sum(1 for r in estate if r.get("name") == "NetworkWatcherRG")
    assert twice >= 2  # the sample has a NetworkWatcherRG in several subscriptions
    for selector, expected in (
            (f"{{vnet: {vnet_id}-typo}}", "is not in the inventory"),
            ("{vnet: payrol-vnet}", "matches nothing in the inventory"),
            ("{resourceGroup: NetworkWatcherRG}", "is ambiguous; use one of: /subscriptions/")):
        policy = tmp_path / "p.yaml"
        policy.write_text(POLICY.read_text().replace(
            "groups:\n", f"groups:\n  typo:\n    {selector}\n", 1))
        for command in ("plan", "groups"):
            code, _, err = run(command, "--policy", str(policy), "--snapshot",
                               str(ESTATE_JSON_PATH))
            assert code == 2, (selector, command, err)
            assert f"{policy}:" in err and "group 'typo'" in err and expected in err, err
