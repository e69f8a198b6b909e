"""GET /api/health: liveness for probes and deploy checks. Anonymous, reveals nothing sensitive."""

import json

import azure.functions as func

from shared import __version__

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions 1.x is untyped here


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    del req
    body = json.dumps({"status": "ok", "service": "zts", "version": __version__})
    return func.HttpResponse(body, status_code=200, mimetype="application/json")
