"""The login service: checks a password, issues a signed session token.

It holds no state, so running it in every site costs nothing; the original topology runs it
in pangyo only, as KakaoTalk's authentication ran in one building in October 2022.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from common import SITE, JsonHandler, serve, sign

SECRET = os.environ["TOKEN_SECRET"]
#: user -> sha256(password); a real service would keep these in a replicated database.
USERS = {
    name: hashlib.sha256(f"{name}-password".encode()).hexdigest()
    for name in ("alice", "bob", "carol", "dave")
}


class Auth(JsonHandler):
    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/health":
            return 200, {"site": SITE}
        if method == "POST" and path == "/login":
            user, password = str(body.get("user", "")), str(body.get("password", ""))
            if USERS.get(user) != hashlib.sha256(password.encode()).hexdigest():
                return 401, {"error": "wrong user or password"}
            return 200, {"token": sign(user, SECRET), "issued_by": SITE}
        return 404, {"error": f"no route {method} {path}"}


if __name__ == "__main__":
    serve(Auth, "auth")
