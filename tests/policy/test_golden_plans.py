"""Golden files for compiled plans, one folder per case: tests/golden/plan/<case>/ holds

* ``policy.yaml`` — the policy;
* ``snapshot.json`` — the case's own small, hand-made estate (raw ARM rows, the format of
  shared/sample/data/estate.json), holding just what the case needs; or, for a case that follows
  a shipped estate on purpose (only ``sample``), ``snapshot.ref``: one repository-relative path
  (``#`` comment lines allowed). A folder with neither, or both, fails: there is no implicit
  fall-back to the sample estate;
* ``expected.plan.json`` — ``zts plan --json``'s exit code, plan and stderr, canonical JSON.

A mismatch writes expected.plan.actual.json beside the golden file; `pytest --update-golden`
rewrites goldens (then read the diff)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shared.adapters.snapshot_file import read_snapshot
from shared.cli import EXIT_FINDINGS, EXIT_INVALID, EXIT_OK, main
from shared.domain.normalize import normalize

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent.parent / "golden" / "plan"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
#: cases allowed to point at a shipped estate instead of holding their own snapshot
SHARED_SNAPSHOT_CASES = frozenset({"sample"})


def canonical(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def snapshot_of(case: str) -> Path:
    """The snapshot a case runs against; fails, naming the folder, when it is not explicit."""
    folder = GOLDEN / case
    own, ref = folder / "snapshot.json", folder / "snapshot.ref"
    if own.exists() == ref.exists():
        pytest.fail(f"{folder}: needs exactly one of snapshot.json (the case's own estate) or "
                    f"snapshot.ref (a shipped estate, for {sorted(SHARED_SNAPSHOT_CASES)} only); "
                    f"found {'both' if own.exists() else 'neither'}")
    if own.exists():
        return own
    if case not in SHARED_SNAPSHOT_CASES:
        pytest.fail(f"{ref}: only {sorted(SHARED_SNAPSHOT_CASES)} may follow a shipped estate; "
                    "give this case its own small snapshot.json")
    lines = [line.strip() for line in ref.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1:
        pytest.fail(f"{ref}: must hold exactly one path, found {lines}")
    target = REPO / lines[0]
    if not target.is_file():
        pytest.fail(f"{ref}: {lines[0]} is not a file in the repository")
    return target


def test_every_case_folder_is_complete() -> None:
    """Every folder is a case (a missing policy.yaml is not skipped) with an explicit snapshot;
    a missing expected.plan.json fails test_plan_matches_golden."""
    assert CASES, f"no golden plan cases under {GOLDEN}"
    for case in CASES:
        folder = GOLDEN / case
        assert (folder / "policy.yaml").is_file(), f"{folder} lacks policy.yaml"
        snapshot_of(case)


@pytest.mark.parametrize("case", CASES)
def test_case_snapshot_loads_cleanly(case: str) -> None:
    """A hand-made snapshot with a typo in an id would drop an association silently: every row
    must load, and every reference must point at a row of the snapshot."""
    report = normalize(read_snapshot(snapshot_of(case))).report
    assert not report.skipped, f"{case}: skipped rows {report.skipped}"
    if (GOLDEN / case / "snapshot.json").exists():
        assert not report.dangling, f"{case}: dangling references {report.dangling}"
        assert not report.duplicates, f"{case}: duplicate rows"


@pytest.mark.parametrize("case", CASES)
def test_plan_matches_golden(case: str, request: pytest.FixtureRequest) -> None:
    folder = GOLDEN / case
    policy = folder / "policy.yaml"
    out, err = io.StringIO(), io.StringIO()
    code = main(["plan", "--policy", str(policy), "--snapshot", str(snapshot_of(case)), "--json"],
                out, err)
    plan = json.loads(out.getvalue())
    # stderr names the policy file: keep it relative to the case folder
    stderr = err.getvalue().replace(str(policy), "policy.yaml").splitlines()
    actual = canonical({"exit_code": code, "plan": plan, "stderr": stderr})
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
    if code == EXIT_INVALID:  # unresolved selectors: the plan says why, stderr says where
        assert plan["errors"], "exit 2 without plan errors"
        assert any(line.startswith("error: policy.yaml:") for line in stderr), stderr
    else:
        assert code == (EXIT_FINDINGS if plan["errors"] else EXIT_OK)


def test_the_sample_case_holds_the_shipped_sample_policy() -> None:
    """The ``sample`` case is what `make demo` prints: its policy is the shipped one."""
    from shared.sample.estate import ESTATE_JSON_PATH

    shipped = ESTATE_JSON_PATH.parent / "policy.yaml"
    assert (GOLDEN / "sample" / "policy.yaml").read_text() == shipped.read_text(), (
        f"tests/golden/plan/sample/policy.yaml differs from {shipped}: copy it, then "
        "--update-golden")
