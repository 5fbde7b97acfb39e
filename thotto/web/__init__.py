"""The creator's web app: pages rendered on the server (Jinja2 templates in ``templates/``), a
little JavaScript and CSS served by Thotto itself (``static/``; no CDN, no Node toolchain), and
server-side sessions (:mod:`thotto.web.sessions`).

Pages call the same use cases as the JSON API and the CLI. :mod:`thotto.web.pages` is what every
page module uses (a :class:`~thotto.web.pages.PageGroup` of routes, ``render``, the signed-in
user, flashes, errors beside their fields); :mod:`thotto.web.routes` lists the page modules and
is mounted into the API's Starlette app. Importing this package imports nothing heavy: the API's
authentication imports :mod:`thotto.web.sessions` from it.
"""
