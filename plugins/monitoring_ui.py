"""Airflow plugin: the Monitoring page inside the Airflow UI.

A FastAPI app mounted by the api-server at /monitoring (the page at /monitoring/, the reports
directory's .html/.png/.json files at /monitoring/reports/<path>) and a top-level nav entry
that shows the page in the UI (/plugin/monitoring). The page itself is
chicago_taxi.monitoring.page; this module is the web edge, as bentos/ is for the service.

Airflow mounts a plugin's app with no authentication of its own (apache/airflow#72655), so
every route depends on `require_airflow_user`: Airflow's own `get_user` (the JWT of an
`Authorization: Bearer` header, else the `_token` cookie the UI's login sets) and the
auth manager's permission to view the website. Without a valid token a browser is sent to the
login page (and back here after it), any other client gets 401.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chicago_taxi.core.config import load_settings
from chicago_taxi.monitoring import page

URL_PREFIX = "/monitoring"
# The page runs no script and loads only its own images; an Evidently report runs its scripts in
# an opaque origin (it renders so, checked), where they cannot use the viewer's Airflow session.
PAGE_POLICY = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'; form-action 'none'"
REPORT_POLICY = "sandbox allow-scripts"
_bearer = HTTPBearer(auto_error=False)


class LoginRequired(Exception):
    """No valid Airflow token on the request (none, or expired)."""


async def require_airflow_user(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)):
    # Imported per request: the security module costs seconds to import and is loaded already in
    # the api-server, while every other Airflow process that loads plugins never calls this.
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import get_user

    try:
        user = await get_user(request, _oauth_token=None, bearer_credentials=credentials)
    except HTTPException as exc:
        if exc.status_code == 401:
            raise LoginRequired(exc.detail) from exc
        raise
    if not get_auth_manager().is_authorized_view(access_view=AccessView.WEBSITE, user=user):
        raise HTTPException(403, "Forbidden")
    return user


def _login_url(request: Request) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=str(request.url))


def create_app(login_url=_login_url) -> FastAPI:
    app = FastAPI(title="Chicago taxi monitoring", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(require_airflow_user)])

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired):
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(login_url(request), status_code=307)
        return JSONResponse({"detail": str(exc) or "Not authenticated"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.get("/", response_class=HTMLResponse)
    def monitoring_page(limit: int = page.SHOWN_WINDOWS) -> HTMLResponse:
        reports_dir = load_settings().monitoring_reports_dir  # per request: the DAG writes, env changes apply
        html = page.render_page(page.load_windows(reports_dir), page.ui_links(), reports_dir, limit=limit)
        return HTMLResponse(html, headers={"Cache-Control": "no-store", "Content-Security-Policy": PAGE_POLICY})

    @app.get("/reports/{relative:path}")
    def report_file(relative: str) -> FileResponse:
        path = page.resolve_report(load_settings().monitoring_reports_dir, relative)
        if path is None:
            raise HTTPException(404, "Not found")
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if path.suffix.lower() == ".html":
            headers["Content-Security-Policy"] = REPORT_POLICY
        return FileResponse(path, media_type=page.served_type(path), headers=headers)

    return app


class TaxiMonitoringPlugin(AirflowPlugin):
    name = "taxi_monitoring"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Chicago taxi monitoring"}]
    # href relative to the UI's base URL (no leading slash), so it also works under a sub-path.
    external_views = [{"name": "Monitoring", "href": "monitoring/", "url_route": "monitoring", "destination": "nav", "nav_top_level": True}]
