"""The web UI: server-rendered pages (Jinja2 + htmx) and uPlot charts over the /api/v1 JSON API.

``install(app)`` is the one hook the server calls: it adds the page routes
(``pages.py``, with sign-in and its session cookie from ``session.py``), the proxy to
notebook consoles (``consoles.py``) and the static files.

Nomenclature: a *page* is a full HTML document under ``/ui``; a *partial* is
a fragment of one (templates whose names start with ``_``) that htmx swaps in
when the page refreshes live. Every page answers ``?format=json`` with the
data it rendered, read through the same functions as the API.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from modelyard.server.web import consoles, models_pages, notebook_pages, sweeps_pages, users_pages
from modelyard.server.web.pages import SignInRequired, router, signin_redirect

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Serve the UI from ``app``: pages under /ui, assets under /ui/static."""
    app.add_exception_handler(SignInRequired, lambda request, _exc: signin_redirect(request))
    app.include_router(router)
    app.include_router(users_pages.router)
    app.include_router(notebook_pages.router)
    app.include_router(sweeps_pages.router)
    app.include_router(models_pages.router)
    app.include_router(consoles.router)  # a notebook console's JupyterLab, for its owner
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="static")
