"""The message store: one per site, each replicating synchronously to its peers.

A message is acknowledged once it is fsynced here and stored by every peer that answers.
When a peer does not answer within REPLICATION_TIMEOUT (its site is burning), the store
keeps serving: it queues what the peer missed, in order, and a background thread delivers
the queue once the peer is back; until then new messages go to the queue too (no one pays
the timeout twice). Replays are harmless: messages have ids and are stored once.
"""

from __future__ import annotations

import collections
import json
import os
import threading
from typing import Any

from common import SITE, JsonHandler, Unavailable, call, serve, setting

DATA = os.environ.get("STORE_DATA", "/data")
LOG = os.path.join(DATA, "messages.jsonl")
REPLICATION_TIMEOUT = float(os.environ.get("REPLICATION_TIMEOUT", "1.0"))
ME = f"store.{SITE}"

lock = threading.Lock()
messages: dict[str, dict[str, Any]] = {}


def keep(record: dict[str, Any]) -> bool:
    """Store `record` durably unless it is already here; True if it was new."""
    with lock:
        if record["id"] in messages:
            return False
        with open(LOG, "a") as log:
            log.write(json.dumps(record) + "\n")
            log.flush()
            os.fsync(log.fileno())
        messages[record["id"]] = record
        return True


class Peer:
    """The replication link to one other store: synchronous, or a queue while it is away."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.lock = threading.Lock()
        self.backlog: collections.deque[dict[str, Any]] = collections.deque()
        self.wake = threading.Event()
        threading.Thread(target=self._deliver, daemon=True).start()

    def _send(self, record: dict[str, Any]) -> None:
        call(f"http://{self.host}:8080/replicate", "POST", record, timeout=REPLICATION_TIMEOUT)

    def replicate(self, record: dict[str, Any]) -> bool:
        """True when the peer stored it before we answer (synchronous replication)."""
        with self.lock:
            if not self.backlog:
                try:
                    self._send(record)
                    return True
                except Unavailable as exc:
                    print(f"peer {self.host} unavailable ({exc}); queueing", flush=True)
            self.backlog.append(record)
            self.wake.set()
            return False

    def _deliver(self) -> None:
        while True:
            self.wake.wait(0.5)
            self.wake.clear()
            while True:
                with self.lock:
                    if not self.backlog:
                        break
                    record = self.backlog[0]
                try:
                    self._send(record)
                except Unavailable:
                    break
                with self.lock:
                    self.backlog.popleft()
                    if not self.backlog:
                        print(f"peer {self.host} caught up", flush=True)


PEERS = [Peer(h) for h in setting("PEERS").split(",") if h.strip() and h.strip() != ME]


class Store(JsonHandler):
    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/health":
            backlog = {p.host: len(p.backlog) for p in PEERS}
            return 200, {"site": SITE, "messages": len(messages), "backlog": backlog}
        if method == "POST" and path == "/messages":
            keep(body)
            synced = [p.host for p in PEERS if p.replicate(body)]
            return 200, {
                "id": body["id"],
                "stored_in": [ME, *synced],
                "replicated": len(synced) == len(PEERS),
            }
        if method == "POST" and path == "/replicate":
            keep(body)
            return 200, {"id": body["id"]}
        if method == "GET" and path.startswith("/rooms/"):
            room = path.removeprefix("/rooms/")
            with lock:
                found = [m for m in messages.values() if m["room"] == room]
            return 200, sorted(found, key=lambda m: (m["ts"], m["id"]))
        return 404, {"error": f"no route {method} {path}"}


if __name__ == "__main__":
    os.makedirs(DATA, exist_ok=True)
    if os.path.exists(LOG):
        with open(LOG) as log:
            for line in log:
                if line.strip():
                    record = json.loads(line)
                    messages[record["id"]] = record
    serve(Store, f"store ({len(messages)} messages, peers: {[p.host for p in PEERS]})")
