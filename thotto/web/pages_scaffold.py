"""Until the web foundation (sessions, base template, static files) is merged: the signed-in
user from the API token, and templates rendered with Jinja2. Replaced by thotto.web's own."""

from __future__ import annotations

from pathlib import Path

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from thotto.api.auth import require_user

HERE = Path(__file__).parent
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)


async def page_user(request: Request):
    return await require_user(request)


def render_page(request: Request, template: str, **context) -> HTMLResponse:
    return HTMLResponse(_ENV.get_template(template).render(request=request, **context))


STATIC = Mount("/static", StaticFiles(directory=HERE / "static"), name="static")
