"""The report use-cases: from in-memory inputs (CLI, demo) and from stored state (Functions).

``write_report(inventory, policy, flows, findings, out_path)`` is the one call the demo needs.
``report_from_runtime(runtime)`` builds the page the ``GET /api/report`` function serves: the
stored inventory, the configured policy and the latest stored plan (with the drift findings it
recorded); when no plan is stored yet, the plan is computed from the stored inventory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.domain.findings import Finding
from shared.domain.inventory import Inventory
from shared.policy.compiler import compile_policy
from shared.policy.model import Policy
from shared.policy.planner import build_plan
from shared.report.findings import ReportFinding, as_report_findings, parse_findings_document
from shared.report.flows import ObservedFlow
from shared.report.model import ReportInputs, build_report
from shared.report.plan import plan_view
from shared.report.render import render_html

if TYPE_CHECKING:
    from shared.runtime import Runtime


def _subscription_names(inventory: Inventory) -> dict[str, str]:
    return {s.subscription_id: s.display_name or s.subscription_id
            for s in inventory.subscriptions.values()}


def report_document(inventory: Inventory, policy: Policy | None,
                    flows: Sequence[ObservedFlow] | None,
                    findings: Iterable[Finding | ReportFinding] = (), *,
                    plan: Mapping[str, Any] | None = None, title: str = "",
                    notes: Sequence[str] = (), sources: Mapping[str, Any] | None = None,
                    ) -> dict[str, Any]:
    """The report data. ``plan`` is a ``Plan.as_dict()``-shaped document to show; without one,
    the plan is computed from ``policy`` and ``inventory`` (nothing is applied)."""
    groups = None  # resolved by build_report unless compiled here
    plan_data = None
    if policy is not None and plan is None:
        compiled = compile_policy(policy, inventory)
        groups = compiled.groups
        computed = build_plan(compiled, inventory, policy.ownership)
        plan_data = plan_view(computed.as_dict(), source="Computed from the inventory and the "
                              "policy; nothing is applied",
                              subscriptions=_subscription_names(inventory))
    if plan is not None:
        plan_data = plan_view(plan, source=str(plan.get("source", "Stored plan")),
                              plan_id=str(plan.get("id", "")),
                              created_at=str(plan.get("createdAt", "")),
                              subscriptions=_subscription_names(inventory))
    return build_report(ReportInputs(
        inventory=inventory, policy=policy, groups=groups, flows=flows,
        findings=as_report_findings(findings), plan=plan_data,
        title=title or "zts segmentation report", notes=notes, sources=dict(sources or {})))


def render_report(inventory: Inventory, policy: Policy | None,
                  flows: Sequence[ObservedFlow] | None,
                  findings: Iterable[Finding | ReportFinding] = (), **options: Any) -> str:
    """The HTML page (see :func:`report_document` for the options)."""
    return render_html(report_document(inventory, policy, flows, findings, **options))


def write_report(inventory: Inventory, policy: Policy | None,
                 flows: Sequence[ObservedFlow] | None,
                 findings: Iterable[Finding | ReportFinding], out_path: Path,
                 **options: Any) -> Path:
    """Write the report page to ``out_path`` (parents created) and return the path.

    ``flows=None`` means "no flow data" (policy allows are then not judged used or unused);
    an empty list means "flows were read and there were none".
    """
    page = render_report(inventory, policy, flows, findings, **options)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8", newline="\n")
    return out_path


def findings_from_file(path: Path) -> tuple[list[ReportFinding], list[str]]:
    """Findings of a JSON file, or the problems that make it unusable."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        return [], [f"cannot read findings file {path}: {error}"]
    loaded = parse_findings_document(text, str(path))
    return list(loaded.findings), list(loaded.errors)


def stored_plan(runtime: Runtime) -> dict[str, Any] | None:
    """The latest plan the app stored, as a plan document with ``id``/``createdAt``/
    ``source`` and the findings it recorded (drift); None when none is stored."""
    audit = runtime.audit()
    listed = audit.list_plans(1)
    if not listed:
        return None
    document = audit.get_plan(str(listed[0]["id"]))
    if document is None:
        return None
    plan = document.get("plan")
    if not isinstance(plan, dict):
        return None
    trigger = str(document.get("trigger") or "")
    return {**plan, "id": str(document.get("id") or listed[0]["id"]),
            "createdAt": str(document.get("createdAt") or ""),
            "source": "Latest stored plan" + (f" (trigger {trigger})" if trigger else ""),
            "findings": document.get("findings") or []}


def report_from_runtime(runtime: Runtime) -> str:
    """The page for ``GET /api/report``: stored inventory, configured policy, latest plan.

    Flow data and traffic findings are not kept in stored state yet; the page says so.
    """
    from shared.settings import SettingsError

    inventory = runtime.stored_inventory()
    notes = ["served from stored state: the observed flows are not stored, so the map shows "
             "the policy without traffic; run `zts report --flow-logs` for the traffic view"]
    try:
        policy: Policy | None = runtime.policy()
    except SettingsError as error:
        policy = None
        notes.append(f"no policy: {error}")
    plan = stored_plan(runtime)
    findings: list[ReportFinding] = []
    if plan is not None:
        loaded = parse_findings_document(_json({"findings": plan.pop("findings")}),
                                         "stored plan")
        findings = list(loaded.findings)
        notes += list(loaded.errors)
    return render_report(inventory, policy, None, findings, plan=plan, notes=notes,
                         title="zts segmentation report",
                         sources={"inventory": f"stored ({sum(inventory.counts().values())} "
                                               "assets)"})


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
