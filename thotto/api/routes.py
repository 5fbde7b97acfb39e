"""The API's Starlette app: every route module's endpoints, in matching order.

The route modules (:mod:`thotto.api.posts`, ``accounts``, ``media``, ``openapi``,
``monitoring``, ``composing``) build on :mod:`thotto.api.endpoints`; this module, above them all, puts them together.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from thotto.api import accounts, composing, media, monitoring, openapi, posts
from thotto.web.pages import error_page
from thotto.web.routes import page_routes
from thotto.api.endpoints import ApiContext, Endpoint, MetricsMiddleware, error_handlers


def all_endpoints() -> tuple[Endpoint, ...]:
    """Every endpoint of the API, in matching order."""
    return (*composing.ENDPOINTS.endpoints, *posts.ENDPOINTS.endpoints, *accounts.ENDPOINTS.endpoints, *media.ENDPOINTS.endpoints,
            *openapi.ENDPOINTS.endpoints, *monitoring.ENDPOINTS.endpoints)


def build_app(context: ApiContext, extra_routes: Sequence[Route] = ()) -> Starlette:
    """The Starlette app serving every endpoint and the creator's pages over ``context``."""
    endpoints = all_endpoints()
    routes = [endpoint.route() for endpoint in endpoints] + page_routes() + list(extra_routes)
    handlers = {**error_handlers(), HTTPException: _page_or_api_error(error_handlers()[HTTPException])}
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[
        Middleware(MetricsMiddleware, metrics=lambda: context.services.metrics)])
    app.state.api = context
    app.state.endpoints = endpoints  # what GET /openapi.json describes
    app.state.openapi = None  # its document, made on the first request
    return app


def _page_or_api_error(api_error):
    """A browser opening an address with no page gets the app's 404 page; everything else the
    API's error body."""

    async def handle(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 404 and _wants_a_page(request):
            return error_page(request, None, 404, f"There is no page at {request.url.path}.")
        return await api_error(request, error)

    return handle


def _wants_a_page(request: Request) -> bool:
    """A browser opening a page (not the JSON API): it is answered with a page."""
    path = request.url.path
    return not path.startswith(("/api/", "/metrics", "/openapi")) and "text/html" in request.headers.get("accept", "")
