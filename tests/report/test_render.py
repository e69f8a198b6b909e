"""The HTML page as bytes: JSON embedding that no value can break out of, bounded data, the
Content-Security-Policy that matches the inline assets, no external resources, and
byte-identical output for the same inputs."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from shared.domain.findings import Finding
from shared.report.findings import ReportFinding, parse_findings_document
from shared.report.render import (
    ASSETS,
    MAX_STRING,
    content_security_policy,
    embed_json,
    render_html,
    sanitize,
)
from shared.report.service import render_report, write_report
from tests.report.conftest import Sample

HOSTILE = ["</script><script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
           "<!--", "<![CDATA[", "javascript:alert(1)", "\u2028\u2029", "&amp;&lt;", "]]>"]


def test_embedded_json_cannot_close_the_element_and_round_trips() -> None:
    value = {"names": HOSTILE, "k</script>": "v"}
    text = embed_json(value)
    assert not set(text) & set("<>&\u2028\u2029")
    assert text.isascii()
    assert json.loads(text) == value  # what JSON.parse in the page gets back


def test_sanitize_bounds_the_data() -> None:
    deep: dict[str, object] = {}
    cursor = deep
    for _ in range(100):
        cursor["d"] = {}
        cursor = cursor["d"]  # type: ignore[assignment]
    cleaned = sanitize({"long": "x" * 100_000, "nan": float("nan"), "inf": float("inf"),
                        "set": {"b", "a"}, "tuple": (1, 2), 3: "int key", "deep": deep})
    assert len(cleaned["long"]) == MAX_STRING and cleaned["long"].endswith("\u2026")
    assert (cleaned["nan"], cleaned["inf"], cleaned["set"], cleaned["tuple"]) == (
        None, None, ["a", "b"], [1, 2])
    assert cleaned["3"] == "int key"
    assert "\u2026" in json.dumps(cleaned["deep"], ensure_ascii=False)  # nesting cut


def test_csp_allows_exactly_the_inline_assets(sample: Sample) -> None:
    page = render_report(sample.inventory, sample.policy, sample.flows, sample.findings)
    css = re.search(r"<style>(.*?)</style>", page, re.DOTALL)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert css is not None and len(scripts) == 1
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    policy = html.unescape(csp.group(1))
    for text in (css.group(1), scripts[0]):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert policy.startswith("default-src 'none';")
    assert policy == content_security_policy()
    assert content_security_policy().startswith("default-src 'none'; script-src 'sha256-")


def test_page_is_self_contained(sample: Sample) -> None:
    page = render_report(sample.inventory, sample.policy, sample.flows, sample.findings)
    assert page.lower().count("<script") == 2  # the JSON data and the page script
    shell = re.sub(r"<script.*?</script>", "", page, flags=re.DOTALL)
    assert not re.search(r"\b(src|href|url)\s*[=(]", shell)  # nothing to load
    urls = set(re.findall(r"https?://[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", page))
    assert urls <= {"https://portal.azure.com", "http://www.w3.org"}  # SVG namespace, links
    for name in ("report.js", "report.css"):
        asset = (ASSETS / name).read_text(encoding="utf-8")
        assert asset.isascii()
        assert "</script" not in asset.lower() and "</style" not in asset.lower()
    script = (ASSETS / "report.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "fetch(", "XMLHttpRequest", "import("):
        assert sink not in script, sink


def test_same_inputs_byte_identical_page(sample: Sample, tmp_path: Path) -> None:
    first = write_report(sample.inventory, sample.policy, sample.flows, sample.findings,
                         tmp_path / "a" / "report.html")
    second = write_report(sample.inventory, sample.policy, list(reversed(sample.flows)),
                          list(reversed(sample.findings)), tmp_path / "b.html")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes().isascii()


def test_title_and_static_summary_are_escaped() -> None:
    page = render_html({"meta": {"title": "</title><script>alert(1)</script>"},
                        "summary": {"groups": 2, "findings": {"high": 1}}})
    assert "<title>&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert "Summary: 2 groups, 1 findings, 1 high." in page


RENDER_IN_A_PROCESS = """
import json, sys
from pathlib import Path
from shared.domain.normalize import normalize
from shared.policy.loader import load_policy_file
from shared.report.flows import ObservedFlow
from shared.report.service import findings_from_file, write_report
from shared.sample.estate import ESTATE_JSON_PATH, classic_estate
flows = [ObservedFlow(**f) for f in json.loads(Path(sys.argv[1]).read_text())]
findings, errors = findings_from_file(Path(sys.argv[2]))
assert not errors, errors
policy = load_policy_file(ESTATE_JSON_PATH.parent / "policy.yaml").policy
write_report(normalize(classic_estate()), policy, flows, findings, Path(sys.argv[3]))
"""


def test_byte_identical_across_processes(sample: Sample, tmp_path: Path) -> None:
    """Different hash seeds (set and dict iteration orders) still give the same bytes."""
    flows = tmp_path / "flows.json"
    flows.write_text(json.dumps([dataclasses.asdict(f) for f in sample.flows]))
    findings = tmp_path / "findings.json"
    findings.write_text(json.dumps({"findings": [f.as_dict() for f in sample.findings]}))
    pages = []
    for seed in ("1", "2"):
        out = tmp_path / f"report-{seed}.html"
        subprocess.run([sys.executable, "-c", RENDER_IN_A_PROCESS, str(flows), str(findings),
                        str(out)], check=True, env={**os.environ, "PYTHONHASHSEED": seed},
                       cwd=Path(__file__).resolve().parents[2], timeout=120)
        pages.append(out.read_bytes())
    assert pages[0] == pages[1]
    in_process = write_report(sample.inventory, sample.policy, sample.flows,
                              [parse_one(f) for f in sample.findings], tmp_path / "here.html")
    assert in_process.read_bytes() == pages[0]


def parse_one(finding: Finding) -> ReportFinding:
    """A finding as it reads back from a file (the fingerprint kept, identity not printed)."""
    loaded = parse_findings_document(json.dumps([finding.as_dict()]))
    (found,) = loaded.findings
    return found
