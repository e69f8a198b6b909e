"""Golden files for compiled plans: tests/golden/plan/<case>/policy.yaml (+ snapshot.json, else
the shipped sample estate) -> expected.plan.json, canonical JSON. A mismatch writes
expected.plan.actual.json beside the golden file; `pytest --update-golden` rewrites goldens."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shared.cli import main
from shared.sample.estate import ESTATE_JSON_PATH

GOLDEN = Path(__file__).parent.parent / "golden" / "plan"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "policy.yaml").exists())


def canonical(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("case", CASES)
def test_plan_matches_golden(case: str, request: pytest.FixtureRequest) -> None:
    folder = GOLDEN / case
    snapshot = folder / "snapshot.json"
    out, err = io.StringIO(), io.StringIO()
    code = main(["plan", "--policy", str(folder / "policy.yaml"), "--snapshot",
                 str(snapshot if snapshot.exists() else ESTATE_JSON_PATH), "--json"], out, err)
    plan = json.loads(out.getvalue())
    actual = canonical({"exit_code": code, "plan": plan})
    golden = folder / "expected.plan.json"
    if request.config.getoption("--update-golden"):
        golden.write_text(actual)
    expected = golden.read_text() if golden.exists() else ""
    if actual != expected:
        (folder / "expected.plan.actual.json").write_text(actual)
    assert actual == expected, f"plan for {case} differs: see {folder}/expected.plan.actual.json"

    # semantic checks beside the golden text
    for nsg in plan["nsgs"]:
        names = [r["name"] for r in nsg["desired"]]
        assert len(names) == len(set(names)), "duplicate rule names"
        assert all(n.startswith("zts-") for n in names + nsg["remove"])
        for direction in ("Inbound", "Outbound"):
            prios = [r["properties"]["priority"] for r in nsg["desired"]
                     if r["properties"]["direction"] == direction]
            assert len(prios) == len(set(prios)), "duplicate priorities"
            denies = [r for r in nsg["desired"] if r["name"].startswith("zts-default-deny")
                      and r["properties"]["direction"] == direction]
            if denies:
                assert denies[0]["properties"]["priority"] == max(prios)  # deny-all is last
    assert code == (1 if plan["errors"] else 0)
