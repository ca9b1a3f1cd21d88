"""Service handles: what a test holds to talk to one running service instance."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import docker.errors

from pytest_dcfire.errors import DcfireError
from pytest_dcfire.topology.model import Service

#: Maps (service, container port) to the (host, port) a test should use: the direct address
#: by default, a Toxiproxy proxy when links are on.
AddressRouter = Callable[["ServiceHandle", int], tuple[str, int]]


class ServiceHandle:
    """One running instance: `name`, `site`, `container` (the docker SDK's object),
    `address(port)` (through the link proxy), `direct_address(port)`, `exec(cmd)`, `logs()`,
    `state()`. `dcfire_topology.service(name)` returns one."""

    def __init__(
        self,
        spec: Service,
        container: Any,
        ip: str,
        engine_local: bool,
        host_address: str,
        source: str = "",
    ) -> None:
        self.spec = spec
        #: The topology file the service was declared in, for messages.
        self.source = source
        self.container = container
        self.ip = ip
        self.engine_local = engine_local
        self._host_address = host_address
        self._router: AddressRouter | None = None
        self.adopted = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def site(self) -> str:
        return self.spec.site

    def __repr__(self) -> str:
        return f"<ServiceHandle {self.name} site={self.site} ip={self.ip}>"

    def route_through(self, router: AddressRouter | None) -> None:
        self._router = router

    @property
    def router(self) -> AddressRouter | None:
        """Where `address()` goes through (the link proxies), if anywhere."""
        return self._router

    def address(self, port: int) -> tuple[str, int]:
        """Where the test process reaches `port` of this service (through the link proxy).

        Only a declared port has a proxy, so only a declared port is accepted: a silent
        fallback to the container's own address would let a brownout or a cut miss the test.
        """
        if port not in self.spec.ports:
            raise DcfireError(self._undeclared(port))
        if self._router is not None:
            return self._router(self, port)
        return self.direct_address(port)

    def _undeclared(self, port: int) -> str:
        if self.adopted:
            return (
                f"service {self.name}: address({port}): an adopted container has no link "
                f"proxy (it is not in the topology); use direct_address({port}) to reach it"
            )
        declared = ", ".join(str(p) for p in self.spec.ports) or "none"
        wanted = ", ".join(str(p) for p in (*self.spec.ports, port))
        where = f" of {self.source}" if self.source else ""
        return (
            f"service {self.name}: address({port}): port {port} is not declared in the "
            f"topology (declared ports: {declared}); address() goes through the link proxy "
            f"of a declared port, so that fires and brownouts reach the test. Add it to "
            f"services.{self.spec.base}{where}: `ports: [{wanted}]`, or use "
            f"direct_address({port}) to reach the port with no proxy in between"
        )

    def direct_address(self, port: int) -> tuple[str, int]:
        """The address with no proxy in between: the container's own, or its published port."""
        if self.engine_local:
            return (self.ip, port)
        self.container.reload()
        bindings = (self.container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp")
        if not bindings:
            raise DcfireError(f"service {self.name}: port {port} is not published")
        return (self._host_address, int(bindings[0]["HostPort"]))

    def exec(self, cmd: str | Sequence[str], timeout: float | None = None) -> tuple[int, str]:
        """Run `cmd` (an argv list; a string is split like a shell would, never run by one)."""
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        try:
            code, output = self.container.exec_run(argv, demux=False)
        except docker.errors.APIError as exc:
            raise DcfireError(f"service {self.name}: exec {argv!r} failed: {exc}") from None
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output)
        return int(code if code is not None else -1), text

    def logs(self, tail: int | None = None) -> str:
        try:
            raw = self.container.logs(tail=tail if tail is not None else "all")
        except docker.errors.NotFound:
            return "(no logs: the container no longer exists)"
        except docker.errors.DockerException as exc:
            return f"(logs unavailable: {exc})"
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    def state(self) -> str:
        """The engine's view of the container: running, paused, exited, removed..."""
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return "removed"
        if self.adopted:  # not on our network: a restart (power loss) may give it a new IP
            self.ip = container_ip(self.container.attrs) or self.ip
        return str(self.container.attrs["State"]["Status"])


def container_ip(info: Mapping[str, Any]) -> str:
    """The first IPv4 address of a container, from the engine's inspect data ("" if none)."""
    nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
    for cfg in nets.values():
        if cfg.get("IPAddress"):
            return str(cfg["IPAddress"])
    return ""
