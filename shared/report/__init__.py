"""The segmentation map and findings report: one self-contained HTML page.

* :mod:`shared.report.flows` - observed flows from NTANetAnalytics-shaped rows (pure);
* :mod:`shared.report.findings`, :mod:`shared.report.plan` - findings and plan views (pure);
* :mod:`shared.report.model` - groups, policy and flows -> the map's nodes and edges (pure);
* :mod:`shared.report.render` - the data -> HTML (escaping, CSP; reads its own assets);
* :mod:`shared.report.flow_source` - flows from flow-log blobs or NTA exports (adapter);
* :mod:`shared.report.service` - ``write_report`` and the stored-state page for the app.

See docs/report.md.
"""

from shared.report.flows import ObservedFlow, observed_flows_from_rows
from shared.report.service import render_report, report_document, write_report

__all__ = ["ObservedFlow", "observed_flows_from_rows", "render_report", "report_document",
           "write_report"]
