"""Teams Workflows messages: an Adaptive Card (1.4) in the ``{"type": "message", "attachments":
[...]}`` envelope that the "post to a channel when a webhook request is received" flow expects.

Cards are dicts serialised by :mod:`json`, never text templates: a value with quotes or braces
stays inside its JSON string. Every user value goes through
:func:`~shared.alerts.escaping.card_text` (Markdown neutralised, URLs defanged, capped), because
TextBlock and FactSet text is Markdown in Teams. The only actions are ``Action.OpenUrl`` to portal
URLs that zts builds from validated ARM ids. Version 1.4 (not 1.5) because the Workflows renderer
is only documented up to 1.4; evidence is a FactSet for the same reason (``Table`` is 1.5).

Teams refuses messages over about 28 KB, so a card that would be larger is rebuilt with fewer
evidence rows (or digest items) and says how many were left out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from shared.alerts.escaping import card_text
from shared.alerts.evidence import evidence_rows, links, portal_url, where_facts
from shared.alerts.message import KIND_LABELS, AlertItem
from shared.domain.findings import SEVERITIES

__all__ = ["CARD_VERSION", "MAX_CARD_BYTES", "alert_card", "batch_card", "card_size"]

CARD_VERSION: Final = "1.4"
CARD_SCHEMA: Final = "http://adaptivecards.io/schemas/adaptive-card.json"
CONTENT_TYPE: Final = "application/vnd.microsoft.card.adaptive"
MAX_CARD_BYTES: Final = 27_000
"""Serialised size a message must stay under (Teams' limit is about 28 KB)."""
MAX_EVIDENCE_FACTS: Final = 25
MAX_ACTIONS: Final = 3
_COLOR: Final = {"critical": "Attention", "high": "Attention", "medium": "Warning",
                 "low": "Accent", "informational": "Default"}

Card = dict[str, Any]


def card_size(message: Card) -> int:
    """Bytes of the message as posted (compact UTF-8 JSON)."""
    return len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _text(value: Any, **style: Any) -> Card:
    return {"type": "TextBlock", "text": card_text(value), "wrap": True, **style}


def _label(text: str, **style: Any) -> Card:
    """A TextBlock of zts's own words (no user data), still escaped for uniformity."""
    return {"type": "TextBlock", "text": card_text(text), "wrap": True, **style}


def _facts(pairs: Sequence[tuple[str, str]]) -> Card:
    return {"type": "FactSet", "facts": [{"title": card_text(k, 80), "value": card_text(v)}
                                          for k, v in pairs]}


def _envelope(body: list[Card], actions: list[Card], fallback: str) -> Card:
    content: Card = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION,
                     "fallbackText": card_text(fallback, 200), "body": body}
    if actions:
        content["actions"] = actions
    return {"type": "message", "attachments": [
        {"contentType": CONTENT_TYPE, "contentUrl": None, "content": content}]}


def _open_url(title: str, url: str) -> Card:
    return {"type": "Action.OpenUrl", "title": title, "url": url}


def _fit(build: Callable[[int], Card], most: int) -> Card:
    """The largest ``build(n)`` (n from ``most`` down) that fits :data:`MAX_CARD_BYTES`."""
    count = most
    while True:
        card = build(count)
        if card_size(card) <= MAX_CARD_BYTES or count == 0:
            return card
        count = count // 2 if count > 4 else count - 1


def alert_card(item: AlertItem, remediation: str) -> Card:
    """One finding: severity and kind, title, why now, where, evidence, remediation, links."""
    label = KIND_LABELS.get(item.kind, item.kind)
    where = where_facts(item.resource_id, item.evidence)
    actions = [_open_url(title, url) for title, url in
               links(item.resource_id, item.evidence)[:MAX_ACTIONS]]
    seen = f"Seen {item.seen_count} time(s)" + (
        f" since {item.first_seen.isoformat(timespec='minutes')}" if item.first_seen else "")

    def build(rows_wanted: int) -> Card:
        rows, omitted = evidence_rows(item.evidence, rows_wanted)
        body: list[Card] = [
            _label(f"{label} · {item.severity.upper()}", weight="Bolder",
                   color=_COLOR.get(item.severity, "Default"), size="Small"),
            _text(item.title, weight="Bolder", size="Medium"),
        ]
        if item.reason:
            body.append(_text(f"Why now: {item.reason}", isSubtle=True))
        body.append(_facts([("Detection", item.detection), ("Severity", item.severity),
                            *where]))
        body.append(_label("Evidence", weight="Bolder", spacing="Medium"))
        body.append(_facts(rows) if rows else _label("(none)"))
        if omitted:
            body.append(_label(f"{omitted} more evidence field(s) not shown (see the email or "
                               "the portal)", isSubtle=True))
        body.append(_label("Remediation", weight="Bolder", spacing="Medium"))
        body.append({"type": "TextBlock", "text": card_text(remediation, 1000), "wrap": True})
        body.append(_text(f"{seen} · fingerprint {item.fingerprint}", isSubtle=True,
                          size="Small"))
        return _envelope(body, actions, f"{label}: {item.severity} {item.detection}")

    return _fit(build, MAX_EVIDENCE_FACTS)


def batch_card(kind: str, items: Sequence[AlertItem], total: int, now: datetime) -> Card:
    """A digest or a resolution notice: one fact per finding (severity and detection -> title
    and resource), as many as fit."""
    noun = "finding" if total == 1 else "findings"
    if kind == "resolution":
        heading = f"Resolved: {total} {noun} no longer seen"
    else:
        counts = Counter(i.severity for i in items)
        summary = ", ".join(f"{counts[s]} {s}" for s in reversed(SEVERITIES) if counts[s])
        heading = f"Digest: {total} {noun} ({summary})"

    def build(listed: int) -> Card:
        shown = list(items[:listed])
        facts = []
        for item in shown:
            name = where_facts(item.resource_id, item.evidence)[0][1]
            facts.append((f"{item.severity.upper()} {item.detection}",
                          f"{item.title} — {name}"))
        body: list[Card] = [_label(f"zts {heading}", weight="Bolder", size="Medium")]
        if facts:
            body.append(_facts(facts))
        left_out = total - len(shown)
        if left_out > 0:
            body.append(_label(f"{left_out} more not listed (see the email digest)",
                               isSubtle=True))
        body.append(_label(f"zts · {now.isoformat(timespec='minutes')}", isSubtle=True,
                           size="Small"))
        first = next((portal_url(i.resource_id) for i in shown if portal_url(i.resource_id)),
                     None)
        actions = [_open_url("Open first resource in Azure portal", first)] if first else []
        return _envelope(body, actions, heading)

    return _fit(build, len(items))
