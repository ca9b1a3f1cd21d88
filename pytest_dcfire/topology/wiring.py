"""Service-to-service links: the `${link:...}` placeholders of a topology, found and resolved.

A service that should reach another one through a Toxiproxy proxy (so that fires, partitions,
brownouts and WAN latency reach that path) writes a placeholder instead of an address:

- `${link:db:5432}` becomes `HOST:PORT` of the proxy in front of port 5432 of `db`;
- `${link.host:db:5432}` and `${link.port:db:5432}` give the two halves.

`db` names a service instance (`db`, `db@ansan`) or a service with one instance per site,
which then means the instance in the consumer's own site. Placeholders are allowed in
`environment` values, `command` and `entrypoint`; they are checked when the topology is
loaded and replaced when the containers are created, once the proxies exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import NoReturn

from pytest_dcfire.errors import did_you_mean, one_of
from pytest_dcfire.topology.model import Link, Service

PLACEHOLDER = re.compile(r"\$\{link(?P<part>\.host|\.port)?:(?P<ref>[^:{}$]+):(?P<port>[^:{}$]+)\}")
#: Anything that starts like a placeholder must be one (a typo is an error, not a literal).
_STARTS = re.compile(r"\$\{link\b")
SYNTAX = "${link:SERVICE:PORT}, ${link.host:SERVICE:PORT} or ${link.port:SERVICE:PORT}"

Fail = Callable[[str, str], NoReturn]
AddressOf = Callable[[str, int], "tuple[str, int]"]


def fields(service: Service, path: str) -> Iterator[tuple[str, str]]:
    """Every (key path, text) of a service where a placeholder may appear."""
    for key, value in service.environment:
        yield f"{path}.environment.{key}", value
    for what in ("command", "entrypoint"):
        for index, arg in enumerate(getattr(service, what) or ()):
            yield f"{path}.{what}[{index}]", arg


def find_links(
    services: Sequence[Service],
    paths: dict[str, str],
    fail: Fail,
    each: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> tuple[Link, ...]:
    """Check every placeholder of every instance; return the links they ask for, in order.

    `paths` maps an instance name to the key path of its service in the file (for errors);
    each field is checked inside `each()`, which may keep a failure and go on (the loader
    collects every mistake that way).
    """
    by_name = {s.name: s for s in services}
    links: dict[tuple[str, str, int], Link] = {}
    for consumer in services:
        for path, text in fields(consumer, paths[consumer.name]):
            with each():
                _field_links(consumer, path, text, services, by_name, links, fail)
    return tuple(links.values())


def _field_links(
    consumer: Service,
    path: str,
    text: str,
    services: Sequence[Service],
    by_name: dict[str, Service],
    links: dict[tuple[str, str, int], Link],
    fail: Fail,
) -> None:
    """The links asked for by the placeholders in one field of `consumer`."""
    for match in _matches(text, path, fail):
        ref = match.group("ref")
        port = _port(match.group("port"), path, fail)
        target = _resolve(ref, consumer, services, by_name, path, fail)
        if port not in target.ports:
            declared = ", ".join(map(str, target.ports)) or "none"
            fail(
                path,
                f"{match.group(0)}: port {port} is not in {target.name}'s `ports` "
                f"(declared: {declared}); links go to declared ports",
            )
        key = (consumer.name, ref, port)
        links.setdefault(key, Link(consumer.name, ref, target.name, port))


def substitute(text: str, address_of: AddressOf) -> str:
    """Replace every placeholder in `text` with the proxy address `address_of(ref, port)`."""

    def one(match: re.Match[str]) -> str:
        host, port = address_of(match.group("ref"), int(match.group("port")))
        part = match.group("part")
        if part == ".host":
            return host
        if part == ".port":
            return str(port)
        return f"{host}:{port}"

    return PLACEHOLDER.sub(one, text)


def has_placeholder(text: str) -> bool:
    return "${link" in text


def _matches(text: str, path: str, fail: Fail) -> list[re.Match[str]]:
    if "${link" not in text:
        return []
    found = list(PLACEHOLDER.finditer(text))
    starts = {m.start() for m in found}
    for start in (m.start() for m in _STARTS.finditer(text)):
        if start not in starts:
            shown = text[start : start + 40]
            fail(path, f"malformed link placeholder {shown!r}; write {SYNTAX}")
    return found


def _port(text: str, path: str, fail: Fail) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        fail(path, f"link port {text!r} is not a port number (1-65535)")
    return int(text)


def _resolve(
    ref: str,
    consumer: Service,
    services: Sequence[Service],
    by_name: dict[str, Service],
    path: str,
    fail: Fail,
) -> Service:
    """The instance `ref` names, as seen from `consumer`."""
    target = by_name.get(ref)
    if target is None:
        instances = [s for s in services if s.base == ref]
        if not instances:
            names = sorted({s.base for s in services} | set(by_name))
            fail(
                path, f"link to unknown service {ref!r}{did_you_mean(ref, names)}; {one_of(names)}"
            )
        local = [s for s in instances if s.site == consumer.site]
        if len(local) != 1:
            choices = ", ".join(s.name for s in instances)
            fail(
                path,
                f"link to {ref!r}: it runs one instance per site ({choices}) and none in "
                f"{consumer.site}, the site of {consumer.name}; name one instance",
            )
        target = local[0]
    if target.base == consumer.base:
        fail(path, f"{consumer.name} links to its own service {ref!r}; use localhost instead")
    return target
