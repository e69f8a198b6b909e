"""Fixtures for the report tests: the sample estate with its flow logs and findings, and a real
headless Chromium (Debian's ``chromium`` package, driven by Playwright without downloading a
browser). Browser tests skip - with the reason - only when Chromium cannot be started."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Request, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from shared.adapters.analytics_files import SAMPLE_CONFIG
from shared.domain.findings import Finding
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.policy.loader import load_policy_file
from shared.policy.model import Policy
from shared.report.flow_source import flows_from_flow_logs
from shared.report.flows import ObservedFlow
from shared.sample.estate import ESTATE_JSON_PATH, classic_estate
from shared.sample.flowlogs import generate_flow_logs
from shared.services.analytics import analyze_flow_logs

CHROMIUM = Path(os.environ.get("ZTS_CHROMIUM", "/usr/bin/chromium"))
DEMO_START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # as shared/services/demo.py
POLICY_PATH = ESTATE_JSON_PATH.parent / "policy.yaml"


@dataclass
class Sample:
    rows: list[dict[str, Any]]
    inventory: Inventory
    policy: Policy
    flow_dir: Path
    flows: list[ObservedFlow]
    findings: list[Finding]


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    rows = classic_estate()
    inventory = normalize(rows)
    loaded = load_policy_file(POLICY_PATH)
    assert loaded.policy is not None
    flow_dir = tmp_path_factory.mktemp("flowlogs")
    generate_flow_logs(rows, flow_dir, start=DEMO_START, hours=1, seed=7)
    flows = flows_from_flow_logs(flow_dir, inventory, rows, SAMPLE_CONFIG)
    assert not flows.problems
    analysis = analyze_flow_logs(rows, flow_dir)  # the sample analytics configuration
    assert analysis.complete, analysis.stats
    return Sample(rows, inventory, loaded.policy, flow_dir, flows.flows, analysis.findings)


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium through Playwright (no browser download). Skips only when it cannot
    be started: install it with ``apt-get install -y chromium`` (or set ZTS_CHROMIUM)."""
    if not CHROMIUM.exists():
        pytest.skip(f"chromium cannot be started: {CHROMIUM} does not exist "
                    "(apt-get install -y chromium, or set ZTS_CHROMIUM)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        except PlaywrightError as error:
            pytest.skip(f"chromium cannot be started: {str(error).splitlines()[0]}")
        yield launched
        launched.close()


@dataclass
class Opened:
    page: Page
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console_errors.append(f"{message.type}: {message.text}")

    def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)


def open_report(browser: Browser, path: Path) -> Opened:
    """Load a report file, recording console errors, page errors, requests and dialogs."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    opened = Opened(page)
    page.on("console", opened.on_console)
    page.on("pageerror", lambda error: opened.console_errors.append(f"pageerror: {error}"))
    page.on("dialog", opened.on_dialog)
    page.on("request", opened.on_request)
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    return opened
