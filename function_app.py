"""The Azure Functions entry point: create the app and register the blueprints. Nothing else.

Importing this module must stay cheap and side-effect free: an exception here hides every
function from the host.
"""

import azure.functions as func

from functions.analytics import bp as analytics_bp
from functions.events import bp as events_bp
from functions.health_http import bp as health_bp
from functions.report_http import bp as report_bp
from functions.runs import bp as runs_bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health_bp)
app.register_functions(events_bp)
app.register_functions(runs_bp)
app.register_functions(analytics_bp)
app.register_functions(report_bp)
