"""Named environments as the API and the new-job form list them: the user's own and the admin's."""
from __future__ import annotations

from typing import Any

from modelyard.server.platform import Platform
from modelyard.server.serialize import environment_to_dict
from modelyard.db import environments as store_environments
from modelyard.db.records import User


def listing_view(p: Platform, user: User) -> dict[str, Any]:
    return {"environments": [environment_to_dict(e) for e in store_environments.list_environments(p.db, user)]}
