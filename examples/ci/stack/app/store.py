"""A Redis-like in-memory store speaking a subset of RESP (PING, GET, SET, DEL, INCR).

Enough of the protocol for `redis-cli` and the api to talk to it. `--ping HOST:PORT` is the
client side, used as the container's health check.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading

DATA: dict[bytes, bytes] = {}
LOCK = threading.Lock()


def read_command(stream) -> list[bytes] | None:
    """One RESP array of bulk strings (or an inline command); None at end of stream."""
    line = stream.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.split()
    args = []
    for _ in range(int(line[1:])):
        size = int(stream.readline()[1:])
        args.append(stream.read(size + 2)[:-2])
    return args


def bulk(value: bytes | None) -> bytes:
    return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)


def execute(args: list[bytes]) -> bytes:
    name = args[0].upper() if args else b""
    with LOCK:
        if name == b"PING":
            return b"+PONG\r\n"
        if name == b"GET" and len(args) == 2:
            return bulk(DATA.get(args[1]))
        if name == b"SET" and len(args) == 3:
            DATA[args[1]] = args[2]
            return b"+OK\r\n"
        if name == b"DEL" and len(args) >= 2:
            return b":%d\r\n" % sum(DATA.pop(key, None) is not None for key in args[1:])
        if name == b"INCR" and len(args) == 2:
            try:
                value = int(DATA.get(args[1], b"0")) + 1
            except ValueError:
                return b"-ERR value is not an integer or out of range\r\n"
            DATA[args[1]] = str(value).encode()
            return b":%d\r\n" % value
    return b"-ERR unknown command or wrong number of arguments\r\n"


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            args = read_command(self.rfile)
            if args is None:
                return
            if args:
                self.wfile.write(execute(args))


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def ping(address: str) -> int:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return 0 if sock.recv(16).startswith(b"+PONG") else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ping"]:
        sys.exit(ping(sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:6379"))
    with Server(("0.0.0.0", 6379), Handler) as server:
        server.serve_forever()
