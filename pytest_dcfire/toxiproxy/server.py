"""The server as a whole: on the caller's event loop, or embedded in a background thread.

The plugin runs it in the test process (no image to pull, no daemon to manage); a thread with
its own loop keeps the proxies moving bytes while the test's own code blocks on sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from pathlib import Path
from types import TracebackType

from pytest_dcfire.toxiproxy.api import ApiHandler, HttpServer, Request
from pytest_dcfire.toxiproxy.proxy import bind_listener, format_address

__all__ = ["EmbeddedToxiproxy", "ToxiproxyServer"]

log = logging.getLogger("pytest_dcfire.toxiproxy")

_MAX_HEAD = 64 * 1024


class ToxiproxyServer:
    """The HTTP API and every proxy it creates, all on the event loop that starts it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int | None = None) -> None:
        self.requested_host = host
        self.requested_port = port
        self.seed = seed
        self.host = host
        self.port = port
        self.handler: ApiHandler | None = None
        self._http: HttpServer | None = None
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        handler = ApiHandler(loop, random.Random(self.seed))
        http = HttpServer(handler)
        sock = await bind_listener(loop, format_address(self.requested_host, self.requested_port))
        try:
            server = await asyncio.start_server(http.serve, sock=sock, limit=_MAX_HEAD)
        except BaseException:
            sock.close()
            raise
        self.host, self.port = sock.getsockname()[:2]
        self.handler, self._http, self._server = handler, http, server

    async def populate_file(self, path: Path) -> None:
        """Create the proxies listed in a JSON file, like ``toxiproxy-server -config``."""
        assert self.handler is not None, "start() the server first"
        response = await self.handler.dispatch(Request("POST", "/populate", {}, path.read_bytes()))
        if response.status >= 300:
            log.error("populating proxies from %s failed: %s", path, response.body.decode())

    async def close(self) -> None:
        """Stop listening, drop every proxy and connection (idempotent)."""
        server, http, handler = self._server, self._http, self.handler
        self._server = self._http = self.handler = None
        if server is not None:
            server.close()
        if http is not None:
            http.close_connections()
        if handler is not None:
            await handler.close()
        if server is not None:
            try:
                await asyncio.wait_for(server.wait_closed(), 5)
            except asyncio.TimeoutError:
                log.warning("toxiproxy API server did not close within 5 s")


class EmbeddedToxiproxy:
    """A ``ToxiproxyServer`` on its own loop in a daemon thread of this process.

    ``start()`` returns once the API listens (``url``, ``host`` and ``port`` are then set);
    ``stop()`` closes every proxy and connection and may be called any number of times.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int | None = None) -> None:
        self._server = ToxiproxyServer(host, port, seed=seed)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedToxiproxy {self.url} {state}>"

    def start(self) -> EmbeddedToxiproxy:
        with self._lock:
            if self._thread is not None:
                return self
            ready = threading.Event()
            failure: list[BaseException] = []
            thread = threading.Thread(
                target=self._run, args=(ready, failure), name="dcfire-toxiproxy", daemon=True
            )
            thread.start()
            ready.wait()
            if failure:
                thread.join()
                raise failure[0]
            self._thread = thread
        log.debug("embedded toxiproxy listening on %s", self.url)
        return self

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._server.start())
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                self._loop = loop
                ready.set()
            loop.run_forever()
            loop.run_until_complete(self._server.close())
            _cancel_remaining(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def stop(self) -> None:
        with self._lock:
            thread, loop = self._thread, self._loop
            self._thread = self._loop = None
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may have ended already
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def __enter__(self) -> EmbeddedToxiproxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
