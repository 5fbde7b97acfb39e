"""Every page route of the web app, mounted into the API's Starlette app (see
:func:`thotto.api.routes.build_app`). Each module in :data:`PAGE_MODULES` has a ``PAGES``
:class:`~thotto.web.pages.PageGroup`; a new page module is added here."""

from __future__ import annotations

import importlib

from starlette.routing import Route

from thotto.web.pages import serve_static

PAGE_MODULES = (
    "thotto.web.signin",
    "thotto.web.home",
    "thotto.web.settings",
    "thotto.web.tokens",
    "thotto.web.accounts",
    "thotto.web.admin",
    "thotto.web.posts",
)


def page_routes() -> list[Route]:
    routes = [Route("/static/{name}", serve_static, methods=["GET"])]
    for name in PAGE_MODULES:
        routes.extend(importlib.import_module(name).PAGES.routes)
    return routes
