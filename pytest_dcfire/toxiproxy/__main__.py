"""``python -m pytest_dcfire.toxiproxy``: the embedded server on its own, like toxiproxy-server.

Handy to poke at the API by hand, or to give another process a Toxiproxy without Docker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from pytest_dcfire.toxiproxy.api import TOXIPROXY_API_VERSION
from pytest_dcfire.toxiproxy.proxy import ProxyError
from pytest_dcfire.toxiproxy.server import ToxiproxyServer

log = logging.getLogger("pytest_dcfire.toxiproxy")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_dcfire.toxiproxy",
        description=(
            "A Toxiproxy-compatible server (HTTP API of Toxiproxy "
            f"{TOXIPROXY_API_VERSION}) in pure Python."
        ),
    )
    parser.add_argument("--host", default="localhost", help="API host (default: localhost)")
    parser.add_argument("--port", type=int, default=8474, help="API port (default: 8474)")
    parser.add_argument("--config", type=Path, help="JSON file of proxies to create at start")
    parser.add_argument("--seed", type=int, help="seed for toxicity and jitter draws")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO (one line per change made through the API)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> int:
    server = ToxiproxyServer(args.host, args.port, seed=args.seed)
    try:
        await server.start()
    except (ProxyError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    log.info("Toxiproxy-compatible API listening on %s", server.url)
    if args.config is not None:
        await server.populate_file(args.config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
