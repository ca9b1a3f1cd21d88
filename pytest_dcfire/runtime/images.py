"""Images for the topology: found locally or built from `build:` contexts, with progress.

A build can take minutes (apt-get inside a Dockerfile); the user sees each step and a
heartbeat, never a silent terminal. Built images are kept between sessions as a cache, and
a build the engine answers from its cache prints nothing (every step with `-v`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import docker.errors

from pytest_dcfire.errors import StartupError, strip_ansi
from pytest_dcfire.runtime.engine import LABEL, Engine
from pytest_dcfire.topology.model import Build, Service

Progress = Callable[[str], None]

#: Seconds of silence from a build before the user is told it is still running.
HEARTBEAT_S = 10.0


def build_tag(build: Build) -> str:
    """A stable tag per build recipe, so repeated sessions reuse the engine's cache."""
    key = repr((build.context, build.dockerfile, build.args)).encode()
    return f"pytest-dcfire/build:{hashlib.sha256(key).hexdigest()[:16]}"


class ImageResolver:
    """Turns each service's `image:` or `build:` into an image id present on the engine."""

    def __init__(self, engine: Engine, progress: Progress, verbose: bool = False) -> None:
        self.engine = engine
        self.progress = progress
        self.verbose = verbose
        #: The services whose image was really built (not answered from the cache).
        self.built: list[str] = []

    def resolve(self, services: Iterable[Service]) -> dict[str, str]:
        """Return {service instance name: image reference}, building each recipe once."""
        builds: dict[Build, list[Service]] = {}
        refs: dict[str, str] = {}
        pulls: dict[str, list[Service]] = {}
        for svc in services:
            if svc.build is not None:
                builds.setdefault(svc.build, []).append(svc)
            elif svc.image is not None:
                pulls.setdefault(svc.image, []).append(svc)
        for image, users in pulls.items():
            self._ensure_present(image, users[0])
            refs.update({s.name: image for s in users})
        if builds:
            with ThreadPoolExecutor(max_workers=min(4, len(builds))) as pool:
                tags = dict(
                    zip(builds, pool.map(lambda b: self._build(b, builds[b]), builds), strict=True)
                )
            for build, users in builds.items():
                refs.update({s.name: tags[build] for s in users})
        return refs

    def _ensure_present(self, image: str, user: Service) -> None:
        try:
            self.engine.client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise StartupError(
                f"service {user.name}: cannot inspect image {image!r}: {exc}"
            ) from None
        self.progress(f"pulling {image} for {user.name}")
        try:
            self.engine.client.images.pull(image)
        except docker.errors.DockerException as exc:
            raise StartupError(
                f"service {user.base}: image {image!r} is not on the engine and could not be "
                f"pulled ({str(exc).splitlines()[0][:200]}); load it (docker load), build it, "
                "or give the service a `build:` context instead"
            ) from None

    def _build(self, build: Build, users: list[Service]) -> str:
        tag = build_tag(build)
        names = ", ".join(sorted({s.base for s in users}))
        steps = BuildSteps(
            self.progress, f"building image for {names} from {build.context}", names, self.verbose
        )
        started = time.monotonic()
        last_output = [started]
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(1.0):
                if steps.ran and time.monotonic() - last_output[0] >= HEARTBEAT_S:
                    self.progress(
                        f"still building {names} ({time.monotonic() - started:.0f} s so far)"
                    )
                    last_output[0] = time.monotonic()

        beat = threading.Thread(target=heartbeat, name="dcfire-build-heartbeat", daemon=True)
        beat.start()
        try:
            stream = self.engine.client.api.build(
                path=build.context,
                dockerfile=build.dockerfile,
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
                buildargs=dict(build.args) or None,
                labels={f"{LABEL}.build": "1"},
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = strip_ansi(str(chunk.get("error", ""))).strip()
                    log = "\n".join(steps.tail[-15:])
                    raise StartupError(
                        f"building the image for {names} from {build.context} failed: {detail}"
                        + (f"\nlast build output:\n{log}" if log else "")
                    )
                if steps.feed(str(chunk.get("stream", ""))):
                    last_output[0] = time.monotonic()
        except docker.errors.DockerException as exc:
            raise StartupError(
                f"building the image for {names} from {build.context} failed: "
                f"{strip_ansi(str(exc))}"
            ) from None
        finally:
            done.set()
        if steps.ran:
            self.built.append(names)
            self.progress(f"built {names} in {time.monotonic() - started:.1f} s")
        elif self.verbose:
            self.progress(f"image for {names}: every step cached")
        return tag


class BuildSteps:
    """Reads a legacy build's output and decides what the user sees: nothing while every
    step comes from the cache; from the first step that really runs, the header and each
    step (with `verbose`, everything from the start)."""

    def __init__(self, progress: Progress, header: str, names: str, verbose: bool) -> None:
        self.progress = progress
        self.names = names
        self.live = False
        #: A step really ran (not answered from the cache).
        self.ran = False
        self.tail: list[str] = []
        self._pending: list[str] = [header]
        self._step: str | None = None  # the instruction of a step whose fate is not known
        if verbose:
            self._go_live()

    def _go_live(self) -> None:
        self.live = True
        for line in self._pending:
            self.progress(line)
        self._pending = []

    def feed(self, text: str) -> bool:
        """Take one chunk of build output; True when something was printed."""
        printed = False
        for raw in text.splitlines():
            line = strip_ansi(raw).rstrip()
            if not line:
                continue
            self.tail.append(line)
            del self.tail[:-50]
            if line.startswith("Step "):
                shown = f"  {self.names}: {line}"
                instruction = line.partition(" : ")[2].split(" ", 1)[0].upper()
                self._step = instruction
                if self.live:
                    self.progress(shown)
                    printed = True
                else:
                    self._pending.append(shown)
                continue
            if self._step is None:
                continue
            step, self._step = self._step, None
            cached = line.strip() == "---> Using cache" or step == "FROM"
            if not cached:
                self.ran = True
                if not self.live:
                    self._go_live()
                    printed = True
        return printed
