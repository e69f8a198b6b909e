"""GET /api/report (function key): the segmentation report page, built from stored state.

The page is the one ``zts report`` writes (shared/report), from the stored inventory, the
configured policy and the latest stored plan. It is served with a Content-Security-Policy
header that allows only its own inline script and stylesheet (the page also carries it in a
``<meta>``), ``no-store`` caching and no framing.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from shared.report.render import content_security_policy
from shared.report.service import report_from_runtime
from shared.runtime import get_runtime
from shared.settings import SettingsError

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions 1.x is untyped here
log = logging.getLogger("zts.report")

HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@bp.function_name("report")
@bp.route(route="report", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def report(req: func.HttpRequest) -> func.HttpResponse:
    del req
    try:
        page = report_from_runtime(get_runtime())
    except SettingsError as error:
        return func.HttpResponse(json.dumps({"error": str(error)}), status_code=503,
                                 mimetype="application/json", headers=dict(HEADERS))
    headers = {**HEADERS, "Content-Security-Policy": content_security_policy()
               + "; frame-ancestors 'none'"}
    log.info("report served (%d bytes)", len(page))
    return func.HttpResponse(page, status_code=200, mimetype="text/html", charset="utf-8",
                             headers=headers)
