"""A tiny durable key-value store over HTTP (stdlib only), one per site.

PUT /k/<key> stores the body in /data/<key> and fsyncs (the file, then its directory after
the rename) before answering 200;
GET /k/<key> returns it; GET /health answers 200 once the data directory is usable.
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATA = os.environ.get("KV_DATA", "/data")
SITE = os.environ.get("KV_SITE", "?")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Site", SITE)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, SITE.encode())
            return
        key = self.path.removeprefix("/k/")
        try:
            with open(os.path.join(DATA, key), "rb") as f:
                self._send(200, f.read())
        except FileNotFoundError:
            self._send(404)

    def do_PUT(self) -> None:
        key = self.path.removeprefix("/k/")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        tmp = os.path.join(DATA, f".{key}.tmp")
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(DATA, key))
        # The rename lives in the directory: without this fsync a power cut can undo it.
        directory = os.open(DATA, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._send(200)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    os.makedirs(DATA, exist_ok=True)
    print(f"kv in {SITE} serving {DATA} on :8080", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
