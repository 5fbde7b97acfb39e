"""The API's Starlette app: every route module's endpoints, in matching order.

The route modules (:mod:`thotto.api.posts`, ``accounts``, ``media``, ``openapi``,
``monitoring``) build on :mod:`thotto.api.app`; this module, above them all, puts them together.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from thotto.api import accounts, media, monitoring, openapi, posts
from thotto.api.app import ApiContext, Endpoint, MetricsMiddleware, error_handlers


def all_endpoints() -> tuple[Endpoint, ...]:
    """Every endpoint of the API, in matching order."""
    return (*posts.ENDPOINTS.endpoints, *accounts.ENDPOINTS.endpoints, *media.ENDPOINTS.endpoints,
            *openapi.ENDPOINTS.endpoints, *monitoring.ENDPOINTS.endpoints)


def build_app(context: ApiContext, extra_routes: Sequence[Route] = ()) -> Starlette:
    """The Starlette app serving every endpoint over ``context``."""
    endpoints = all_endpoints()
    routes = [endpoint.route() for endpoint in endpoints] + list(extra_routes)
    app = Starlette(routes=routes, exception_handlers=error_handlers(), middleware=[
        Middleware(MetricsMiddleware, metrics=lambda: context.services.metrics)])
    app.state.api = context
    app.state.endpoints = endpoints  # what GET /openapi.json describes
    app.state.openapi = None  # its document, made on the first request
    return app
