"""The messenger API that clients talk to: one instance per site.

POST /login asks the auth service (AUTH_URL) for a token; POST /rooms/<room>/messages checks
the token itself (it is signed) and stores the message through its own site's store
(STORE_URL); GET /rooms/<room>/messages reads from that store. Dependencies that do not
answer within a second give a 503 naming them, never a hang.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from common import SITE, JsonHandler, call, serve, setting, verify

SECRET = os.environ["TOKEN_SECRET"]
AUTH_URL = setting("AUTH_URL")
STORE_URL = setting("STORE_URL")


class Api(JsonHandler):
    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/health":
            return 200, {"site": SITE, "auth": AUTH_URL, "store": STORE_URL}
        if method == "POST" and path == "/login":
            return call(f"{AUTH_URL}/login", "POST", body)
        if path.startswith("/rooms/") and path.endswith("/messages"):
            room = path.removeprefix("/rooms/").removesuffix("/messages")
            if method == "GET":
                return call(f"{STORE_URL}/rooms/{room}")
            if method == "POST":
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                user = verify(token, SECRET) if token else None
                if user is None:
                    return 401, {"error": "log in first"}
                record = {
                    "id": uuid.uuid4().hex,
                    "room": room,
                    "sender": user,
                    "text": str(body.get("text", "")),
                    "ts": time.time(),
                    "via": SITE,
                }
                status, stored = call(f"{STORE_URL}/messages", "POST", record, timeout=3.0)
                return (201 if status == 200 else status), stored
        return 404, {"error": f"no route {method} {path}"}


if __name__ == "__main__":
    serve(Api, "api")
