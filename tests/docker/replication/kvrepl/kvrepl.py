"""A replicated key-value store in stdlib Python: a primary that copies every write to a
replica, synchronously (acknowledged once the replica has it) or asynchronously
(acknowledged at once, shipped in order by a background thread).

Everything is in memory: a fire cuts the network, the processes keep running, so what a
fire can lose is exactly what replication had not shipped.

POST /reset  {"mode": "sync"|"async", "role": "primary"|"replica"}  empty store, new epoch
PUT  /k/KEY  (primary) store; 200 once acknowledged; 503 when stored here but the replica
             did not confirm (sync: indeterminate for the client); 409 on a replica
PUT  /r/KEY  a replicated write, from the primary
POST /promote  the replica becomes the primary (no peer: writes are acknowledged alone)
GET  /all    every key and value, as a JSON object
GET  /health
"""

import http.client
import json
import os
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypedDict

PEER = os.environ.get("KV_PEER", "")
FORWARD_TIMEOUT = float(os.environ.get("KV_FORWARD_TIMEOUT", "1.0"))


class State(TypedDict):
    role: str  # primary, replica or promoted
    mode: str  # sync or async
    epoch: int  # bumped by /reset: the backlog of an earlier epoch is dropped


lock = threading.Lock()
state: State = {"role": os.environ.get("KV_ROLE", "primary"), "mode": "sync", "epoch": 0}
data: dict[str, str] = {}
backlog: "queue.Queue[tuple[int, str, bytes]]" = queue.Queue()


def forward(key: str, body: bytes) -> bool:
    """Send one write to the replica; True once it confirmed."""
    if not PEER:
        return False
    host, port = PEER.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=FORWARD_TIMEOUT)
    try:
        conn.request("PUT", f"/r/{key}", body=body)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def ship() -> None:
    """The asynchronous replication stream: in order, each write retried until it lands
    (or a reset starts a new epoch)."""
    while True:
        epoch, key, body = backlog.get()
        while epoch == state["epoch"] and not forward(key, body):
            time.sleep(0.05)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, state["role"].encode())
        elif self.path == "/all":
            with lock:
                self._send(200, json.dumps(data).encode())
        else:
            self._send(404)

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/reset":
            options = json.loads(body or b"{}")
            with lock:
                data.clear()
                state["epoch"] += 1
                state["mode"] = options.get("mode", "sync")
                state["role"] = options.get("role", state["role"])
                while not backlog.empty():
                    backlog.get_nowait()
            self._send(200)
        elif self.path == "/promote":
            with lock:
                state["role"] = "promoted"
            self._send(200)
        else:
            self._send(404)

    def do_PUT(self) -> None:
        body = self._body()
        if self.path.startswith("/r/"):
            with lock:
                data[self.path[3:]] = body.decode()
            self._send(200)
            return
        if not self.path.startswith("/k/"):
            self._send(404)
            return
        key = self.path[3:]
        with lock:
            role, mode, epoch = state["role"], state["mode"], state["epoch"]
            if role == "replica":
                self._send(409, b"not the primary")
                return
            data[key] = body.decode()
        if role == "promoted":
            self._send(200)
        elif mode == "async":
            backlog.put((epoch, key, body))
            self._send(200)
        elif forward(key, body):
            self._send(200)
        else:
            self._send(503, b"stored here, not confirmed by the replica")

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    threading.Thread(target=ship, daemon=True).start()
    print(f"kvrepl {state['role']} (peer {PEER or 'none'}) on :8080", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
