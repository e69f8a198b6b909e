"""The report in a real headless Chromium: it loads with no console errors and no request but
its own file, the map draws every node and edge, the filters work, the blast-radius view shows
the hops, and hostile names, tags and findings stay text (no dialog, no injected element).

``pytest --update-golden tests/report`` also refreshes docs/report-sample.png."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from shared.domain.findings import Finding
from shared.domain.normalize import normalize
from shared.policy.loader import load_policy
from shared.report.render import MAX_STRING
from shared.report.service import report_document, write_report
from tests.report.conftest import POLICY_PATH, Opened, Sample, open_report

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "report-sample.png"
SCRIPT = "</script><script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
JS_URL = "javascript:alert(3)"
LONG = "A" * 20_000 + SCRIPT
TITLE = "</title><script>alert(4)</script>"
VM_TYPE = "microsoft.compute/virtualmachines"


def count(page: Page, selector: str) -> int:
    return page.locator(selector).count()


def visible_rows(page: Page, selector: str) -> int:
    result: int = page.evaluate(
        "(s) => [...document.querySelectorAll(s)].filter(r => !r.classList.contains('off'))"
        ".length", selector)
    return result


def data(page: Page) -> dict[str, Any]:
    text = page.evaluate("document.getElementById('zts-data').textContent")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


@pytest.fixture(scope="module")
def sample_page(browser: Browser, sample: Sample,
                tmp_path_factory: pytest.TempPathFactory) -> Opened:
    path = write_report(sample.inventory, sample.policy, sample.flows, sample.findings,
                        tmp_path_factory.mktemp("report") / "report.html",
                        sources={"snapshot": "estate.json", "policy": POLICY_PATH.name})
    return open_report(browser, path)


def test_loads_clean_and_offline(sample_page: Opened) -> None:
    page = sample_page.page
    assert sample_page.console_errors == []
    assert len(sample_page.requests) == 1 and sample_page.requests[0].startswith("file://")
    assert page.title() == "zts segmentation report"
    assert page.locator("[data-card='findings'] .n").inner_text() == "5"


def test_map_draws_every_node_and_edge(sample_page: Opened) -> None:
    page, document = sample_page.page, data(sample_page.page)
    assert count(page, "svg.map g.node") == len(document["nodes"]) == 11
    assert count(page, "svg.map g.node.group") == 9
    assert count(page, "svg.map g.edge-group") == len(document["edges"])
    assert count(page, "svg.map path.edge.violation") == sum(
        e["status"] == "violation" for e in document["edges"]) > 0
    assert count(page, "#edge-table tbody tr") == len(document["edges"])
    labels = page.locator("svg.map g.node text:not(.small):not(.badge-n)").all_text_contents()
    assert {"web", "logic", "estate", "Internet", "Azure services"} <= set(labels)
    # every node sits inside the drawing
    box = page.locator("svg.map").bounding_box()
    assert box is not None
    for circle in page.locator("svg.map g.node circle.body").all():
        where = circle.bounding_box()
        assert where is not None
        assert box["x"] <= where["x"] and where["x"] + where["width"] <= box["x"] + box["width"]


def test_clicking_a_group_and_an_edge_shows_details(sample_page: Opened) -> None:
    page = sample_page.page
    page.locator("svg.map g.node[data-node='g:web'] circle.body").click()
    details = page.locator("#details")
    assert details.locator("h3").inner_text() == "web"
    assert "payroll-web-01" in details.inner_text()
    assert "4 IP configurations on 4 NICs" in details.inner_text()
    page.locator("#edge-table tbody tr").first.click()
    assert "\u2192" in details.locator("h3").inner_text()
    assert "default deny" in details.inner_text()
    # hiding a status hides its edges on the map and in the table
    page.locator("#edge-filters input[data-status='violation']").uncheck()
    assert count(page, "svg.map g.edge-group[data-status='violation']:not(.off)") == 0
    assert visible_rows(page, "#edge-table tbody tr") == count(
        page, "#edge-table tbody tr:not([data-status='violation'])")
    page.locator("#edge-filters input[data-status='violation']").check()
    assert sample_page.console_errors == []


def test_findings_filters(sample_page: Opened) -> None:
    page = sample_page.page
    page.locator("nav button[data-tab=findings]").click()
    assert page.locator("#tab-findings").is_visible()
    assert visible_rows(page, "#finding-table tbody tr[data-severity]") == 5
    page.locator("#findings input[data-severity='high']").uncheck()
    assert visible_rows(page, "#finding-table tbody tr[data-severity]") == 2
    assert page.locator("#finding-count").inner_text() == "showing 2 of 5"
    page.locator("#findings input[data-severity='high']").check()
    page.locator("#detection-filter").select_option("blast_radius")
    assert visible_rows(page, "#finding-table tbody tr[data-severity]") == 2
    page.locator("#detection-filter").select_option("")
    page.locator("#finding-search").fill("payroll-app-01")  # the cross-subscription one
    assert visible_rows(page, "#finding-table tbody tr[data-severity]") == 1
    page.locator("#finding-search").fill("")
    link = page.locator("#finding-table a").first
    assert (link.get_attribute("href") or "").startswith(
        "https://portal.azure.com/#@/resource/subscriptions/")
    assert link.get_attribute("rel") == "noopener noreferrer"
    page.locator("#finding-table button.link").first.click()
    assert "203.0.113.66" in page.locator("#finding-table pre.evidence").first.inner_text()


def test_blast_radius_view_shows_the_hops(sample_page: Opened) -> None:
    page, document = sample_page.page, data(sample_page.page)
    page.locator("nav button[data-tab=blast]").click()
    options = page.locator("#blast-origin option").all_inner_texts()
    assert len(options) == 2 and options[0].startswith("10.10.1.4 (payroll-web-01)")
    web = document["blast"][0]
    assert count(page, "svg.blast g.hop") == len(web["reached"]) + 1  # and the origin
    assert count(page, "svg.blast .lane-label") == web["maxHops"] + 1
    assert count(page, "#blast-table tbody tr") == len(web["reached"])
    first = page.locator("#blast-table tbody tr").first.locator("td").all_inner_texts()
    assert first[:3] == ["1", "10.10.2.4", "payroll-app-01"]
    page.locator("#blast-origin").select_option("1")
    sap = document["blast"][1]
    assert count(page, "#blast-table tbody tr") == len(sap["reached"])
    assert "erp-sap-01" in page.locator("#blast-view .panel").inner_text()


def test_plan_view(sample_page: Opened) -> None:
    page, document = sample_page.page, data(sample_page.page)
    page.locator("nav button[data-tab=plan]").click()
    assert count(page, "#plan details.nsg") == len(document["plan"]["nsgs"]) == 7
    assert count(page, "#plan tr[data-change='add']") == 28
    assert "+28 added" in page.locator("#plan p").first.inner_text()
    assert sample_page.console_errors == []


def test_screenshot(browser: Browser, sample: Sample, tmp_path: Path,
                    request: pytest.FixtureRequest) -> None:
    path = write_report(sample.inventory, sample.policy, sample.flows, sample.findings,
                        tmp_path / "report.html",
                        sources={"snapshot": "estate.json", "policy": POLICY_PATH.name})
    opened = open_report(browser, path)
    page = opened.page
    page.set_viewport_size({"width": 1440, "height": 1040})
    assert opened.console_errors == []
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if request.config.getoption("--update-golden"):
        shutil.copyfile(shot, SCREENSHOT)


def test_without_javascript_the_page_says_what_to_do(browser: Browser, sample: Sample,
                                                     tmp_path: Path) -> None:
    path = write_report(sample.inventory, sample.policy, sample.flows, sample.findings,
                        tmp_path / "report.html")
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(path.as_uri())
        assert "Open the file in a web browser" in page.locator("noscript").inner_text()
        assert "9 groups, 5 findings" in page.locator("noscript").inner_text()
    finally:
        context.close()


# -- hostile values ---------------------------------------------------------------------------


def hostile_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(rows)
    names = {"payroll-web-01": SCRIPT, "payroll-web-02": IMG, "payroll-app-01": JS_URL,
             "erp-sap-01": LONG}
    for row in out:
        if row["type"] == VM_TYPE:
            row["name"] = names.get(row["name"], row["name"])
            row["tags"] = {**row.get("tags", {}), "owner": IMG, SCRIPT: JS_URL, "big": LONG}
        elif row["type"] == "microsoft.network/virtualnetworks":
            row["tags"] = {"note": SCRIPT}
    return out


HOSTILE_POLICY = POLICY_PATH.read_text(encoding="utf-8").replace(
    "rules:\n", "  evil: {tags: {owner: '\"><img src=x onerror=alert(2)>'}}\nrules:\n")
WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
HOSTILE_FINDINGS = [
    Finding("drift", "high", SCRIPT + " drift", JS_URL, WHEN,
            {SCRIPT: IMG, "url": JS_URL, "long": "x" * 100_000}),
    Finding("risky_region", "critical", IMG,
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
            "Microsoft.Compute/virtualMachines/" + IMG, WHEN, {"note": SCRIPT}),
    Finding("blast_radius", "high", SCRIPT, "", WHEN, {
        "origin": "10.10.1.4", "since": "2026-11-02T09:00:00.000Z", "reasons": [SCRIPT],
        "reached": [{"ip": "10.10.2.4", "hops": 1, "first_seen": "2026-11-02T09:10:00.000Z",
                     "via": "10.10.1.4"},
                    {"ip": "10.20.1.4", "hops": 2, "first_seen": "2026-11-02T09:20:00.000Z",
                     "via": IMG}]}),
]


def test_hostile_values_stay_text(browser: Browser, sample: Sample, tmp_path: Path) -> None:
    inventory = normalize(hostile_rows(sample.rows))
    assert any(vm.name == SCRIPT for vm in inventory.vms.values())
    policy = load_policy(HOSTILE_POLICY).policy
    assert policy is not None
    path = write_report(inventory, policy, sample.flows, HOSTILE_FINDINGS,
                        tmp_path / "hostile.html", title=TITLE, notes=[SCRIPT, IMG])
    html = path.read_text(encoding="utf-8")
    assert html.lower().count("<script") == 2 and html.lower().count("</script") == 2
    assert "<img" not in html.lower()
    assert SCRIPT not in html and IMG not in html
    assert len(html) < 2_000_000  # long values are cut, not copied around

    opened = open_report(browser, path)
    page = opened.page
    for circle in page.locator("svg.map g.node circle.body").all():
        circle.click()
    for row in page.locator("#edge-table tbody tr").all()[:8]:
        row.click()
    for tab in ("findings", "blast", "plan", "map"):
        page.locator(f"nav button[data-tab={tab}]").click()
        if tab == "findings":
            for button in page.locator("#finding-table button.link").all():
                button.click()
    page.locator("svg.map g.node[data-node='g:evil'] circle.body").click()

    assert opened.dialogs == []
    assert opened.console_errors == []
    assert len(opened.requests) == 1
    injected = page.evaluate("""() => ({
        scripts: document.scripts.length,
        embedded: document.querySelectorAll('img, iframe, object, embed, link, base').length,
        handlers: [...document.querySelectorAll('*')].filter(
            e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on'))).length,
        links: [...document.querySelectorAll('a')].map(a => a.getAttribute('href')),
    })""")
    assert injected["scripts"] == 2 and injected["embedded"] == 0 and injected["handlers"] == 0
    assert injected["links"] and all(link.startswith("https://portal.azure.com/#@/resource/")
                                     for link in injected["links"])
    # the values are shown, as text
    assert page.title() == TITLE
    assert SCRIPT in page.locator("#notes").inner_text()
    assert "selector\ntags owner=" + IMG in page.locator("#details").inner_text().lower()
    page.locator("nav button[data-tab=findings]").click()
    table = page.locator("#finding-table").inner_text()
    assert SCRIPT + " drift" in table and IMG in table
    assert page.locator("#finding-table tr[data-detection='drift'] a").count() == 0  # javascript:
    assert page.locator("#finding-table tr[data-detection='blast_radius'] a").count() == 1
    document = data(page)
    drift = next(f for f in document["findings"] if f["detection"] == "drift")
    assert drift["portal"] is None
    assert len(drift["evidence"]["long"]) == MAX_STRING
    page.locator("nav button[data-tab=blast]").click()
    assert SCRIPT in page.locator("#blast-view").inner_text()
    assert IMG in page.locator("#blast-table").inner_text()
    page.locator("nav button[data-tab=map]").click()
    page.locator("svg.map g.node[data-node='g:web'] circle.body").click()
    assert SCRIPT in page.locator("#details").inner_text()  # payroll-web-01's new name
    assert report_document(inventory, policy, sample.flows, HOSTILE_FINDINGS)["nodes"]


def test_an_empty_estate_renders_without_errors(browser: Browser, tmp_path: Path) -> None:
    path = write_report(normalize([]), None, [], [], tmp_path / "empty.html")
    opened = open_report(browser, path)
    assert opened.console_errors == []
    assert count(opened.page, "svg.map g.node") == 0
    for tab in ("findings", "blast", "plan"):
        opened.page.locator(f"nav button[data-tab={tab}]").click()
        assert opened.page.locator(f"#tab-{tab} p.muted").count() == 1
    assert opened.console_errors == []
