"""The users page for admins (``/ui/admin/users``) and one's own usage page (``/ui/me``).

Both read through services/users.py, as the ``/users`` and ``/me/usage`` API routes do;
the page's buttons call those routes (static/js/users.js). A plain user asking for the
admin page gets a 403 page, as the API answers 403.
"""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from modelyard.errors import ModelyardError
from modelyard.server.serialize import token_to_dict
from modelyard.server.web.pages import PlatformDep, UserDep
from modelyard.server.web.render import respond
from modelyard.services.users import duration_text

router = APIRouter(include_in_schema=False)


@router.get("/ui/admin/users")
def users_page(request: Request, p: PlatformDep, user: UserDep) -> Response:
    try:
        accounts = p.users.accounts(user)
    except ModelyardError as exc:
        return respond(request, "forbidden.html", exc.to_dict(), user=user, status_code=exc.http_status)
    now = time.time()
    rows = [{**a.to_dict(), "tokens": [token_to_dict(t, now=now) for t in p.users.tokens(user, a.name)]}
            for a in accounts]
    return respond(request, "admin_users.html", {"users": rows, **_window(p)}, user=user)


@router.get("/ui/me")
def me_page(request: Request, p: PlatformDep, user: UserDep) -> Response:
    return respond(request, "me.html", {"account": p.users.my_account(user).to_dict(), **_window(p)}, user=user)


def _window(p: Any) -> dict[str, Any]:
    return {"halflife": duration_text(p.settings.fairshare_halflife),
            "runtime_cap": duration_text(p.settings.max_runtime_cap)}
