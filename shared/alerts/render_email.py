"""Alert emails: subject, plain text and HTML, every user value escaped for its place.

HTML is assembled from constant markup and values that went through
:func:`~shared.alerts.escaping.html_text`; the only ``href`` values are portal URLs built by
:mod:`shared.alerts.evidence` (and escaped as attributes all the same). The plain-text body carries
the same content for clients that do not show HTML.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from shared.alerts.escaping import defang, html_text, one_line, plain_text
from shared.alerts.evidence import evidence_rows, links, portal_url, where_facts
from shared.alerts.message import KIND_LABELS, AlertItem
from shared.domain.findings import SEVERITIES

__all__ = ["MAX_EVIDENCE_ROWS", "EmailContent", "alert_email", "batch_email", "subject_text"]

MAX_EVIDENCE_ROWS: Final = 50
SUBJECT_LIMIT: Final = 200
_STYLE_BODY: Final = "font-family:Segoe UI,Arial,sans-serif;font-size:14px;color:#1b1b1b"
_STYLE_CELL: Final = "border:1px solid #d0d0d0;padding:4px 8px;text-align:left;vertical-align:top"
_STYLE_SMALL: Final = "color:#666666;font-size:12px"
_SEVERITY_COLOR: Final = {"critical": "#a4262c", "high": "#d13438", "medium": "#ca5010",
                          "low": "#0078d4", "informational": "#605e5c"}


@dataclass(frozen=True, slots=True)
class EmailContent:
    subject: str
    plain_text: str
    html: str


def subject_text(value: str) -> str:
    """A subject line: one line (no header injection), capped, URLs defanged."""
    return defang(one_line(value, SUBJECT_LIMIT))


def _h(value: object, *, single_line: bool = False) -> str:
    return html_text(value, single_line=single_line)


def _href(url: str) -> str:
    """A link zts built itself (a portal URL from a validated ARM id): attribute-escaped, not
    defanged."""
    return html.escape(url, quote=True)


def _table(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f'<tr><th style="{_STYLE_CELL}">{_h(k, single_line=True)}</th>'
                    f'<td style="{_STYLE_CELL}">{_h(v)}</td></tr>' for k, v in rows)
    return f'<table style="border-collapse:collapse">{cells}</table>'


def _page(subject: str, inner: str) -> str:
    return ('<!DOCTYPE html><html><head><meta charset="utf-8">'
            f'<title>{html_text(subject, single_line=True)}</title></head>'
            f'<body style="{_STYLE_BODY}">{inner}</body></html>')


def _severity_badge(severity: str, label: str) -> str:
    color = _SEVERITY_COLOR.get(severity, "#605e5c")
    return (f'<p style="color:{color};font-weight:bold;margin:0">'
            f'{_h(label, single_line=True)} · {_h(severity.upper(), single_line=True)}</p>')


def alert_email(item: AlertItem, remediation: str) -> EmailContent:
    """One finding: what, where, why now, evidence, what to do, links."""
    label = KIND_LABELS.get(item.kind, item.kind)
    subject = subject_text(f"[zts] {label}: {item.severity.upper()} {item.detection} - "
                           f"{item.title}")
    where = where_facts(item.resource_id, item.evidence)
    rows, omitted = evidence_rows(item.evidence, MAX_EVIDENCE_ROWS)
    link_list = links(item.resource_id, item.evidence)
    seen = f"seen {item.seen_count} time(s)" + (
        f" since {item.first_seen.isoformat(timespec='minutes')}" if item.first_seen else "")
    footer = (f"Detection {item.detection} · fingerprint {item.fingerprint} · {seen} · "
              f"observed {item.observed_at}")
    more = f"<p>{omitted} more evidence field(s) not shown.</p>" if omitted else ""
    html_links = "".join(f'<li><a href="{_href(url)}">{_h(title)}</a></li>'
                         for title, url in link_list)
    inner = (_severity_badge(item.severity, label)
             + f"<h2>{_h(item.title, single_line=True)}</h2>"
             + (f"<p><b>Why now:</b> {_h(item.reason)}</p>" if item.reason else "")
             + _table([("Detection", item.detection), ("Severity", item.severity), *where])
             + "<h3>Evidence</h3>" + (_table(rows) if rows else "<p>(none)</p>") + more
             + f"<h3>Remediation</h3><p>{_h(remediation)}</p>"
             + (f"<ul>{html_links}</ul>" if html_links else "")
             + f'<p style="{_STYLE_SMALL}">{_h(footer)}</p>')
    text_lines = [
        f"{label} · {item.severity.upper()}",
        plain_text(one_line(item.title, 2000)),
        *([f"Why now: {plain_text(item.reason)}"] if item.reason else []),
        "",
        f"Detection: {plain_text(item.detection)}",
        f"Severity: {item.severity}",
        *(f"{k}: {plain_text(one_line(v, 2000))}" for k, v in where),
        "",
        "Evidence:",
        *(f"  {plain_text(one_line(k, 200))}: {plain_text(one_line(v, 2000))}" for k, v in rows),
        *([f"  ({omitted} more evidence field(s) not shown)"] if omitted else []),
        "",
        f"Remediation: {plain_text(remediation)}",
        *(f"{title}: {url}" for title, url in link_list),
        "",
        plain_text(footer),
    ]
    return EmailContent(subject, "\n".join(text_lines) + "\n", _page(subject, inner))


def _counts(items: Sequence[AlertItem]) -> str:
    counts = Counter(i.severity for i in items)
    return ", ".join(f"{counts[s]} {s}" for s in reversed(SEVERITIES) if counts[s])


def batch_email(kind: str, items: Sequence[AlertItem], total: int, now: datetime) -> EmailContent:
    """A digest (many low-severity findings) or resolution notice (findings no longer seen) as
    one message; ``items`` are the ones listed, ``total`` how many the message covers."""
    noun = "finding" if total == 1 else "findings"
    if kind == "resolution":
        heading = f"Resolved: {total} {noun} no longer seen"
    else:
        heading = f"Digest: {total} {noun} ({_counts(items)})"
    subject = subject_text(f"[zts] {heading}")
    header = "".join(f'<th style="{_STYLE_CELL}">{h}</th>'
                     for h in ("Severity", "Detection", "Finding", "Where", "Seen", "Link"))
    body_rows = []
    text_rows = []
    for item in items:
        where = ", ".join(f"{k}: {v}" for k, v in where_facts(item.resource_id, item.evidence)[:3])
        url = portal_url(item.resource_id)
        link = f'<a href="{_href(url)}">portal</a>' if url else ""
        body_rows.append(
            "<tr>" + "".join(f'<td style="{_STYLE_CELL}">{cell}</td>' for cell in (
                _h(item.severity, single_line=True), _h(item.detection, single_line=True),
                _h(item.title, single_line=True), _h(where, single_line=True),
                str(item.seen_count), link)) + "</tr>")
        title = plain_text(one_line(item.title, 500))
        place = plain_text(one_line(where, 500))
        text_rows.append(f"- [{item.severity}] {plain_text(item.detection)}: {title} ({place}; "
                         f"seen {item.seen_count}x){' ' + url if url else ''}")
    left_out = total - len(items)
    more = f"<p>{left_out} more not listed.</p>" if left_out > 0 else ""
    stamp = f"zts, {now.isoformat(timespec='minutes')}"
    inner = (f"<h2>{_h(heading, single_line=True)}</h2>"
             + f'<table style="border-collapse:collapse"><tr>{header}</tr>{"".join(body_rows)}'
             + f"</table>{more}"
             + f'<p style="{_STYLE_SMALL}">{_h(stamp)}</p>')
    text = "\n".join([heading, "", *text_rows,
                      *([f"({left_out} more not listed)"] if left_out > 0 else []), "", stamp])
    return EmailContent(subject, text + "\n", _page(subject, inner))
