"""Images for the topology: found locally or built from `build:` contexts, with progress.

A build can take minutes (apt-get inside a Dockerfile); the user sees each step and a
heartbeat, never a silent terminal. Built images are kept between sessions as a cache.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import docker.errors

from pytest_dcfire.errors import StartupError
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

    def __init__(self, engine: Engine, progress: Progress) -> None:
        self.engine = engine
        self.progress = progress

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
        self.progress(f"building image for {names} from {build.context}")
        started = time.monotonic()
        last_output = [started]
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(1.0):
                if time.monotonic() - last_output[0] >= HEARTBEAT_S:
                    self.progress(
                        f"still building {names} ({time.monotonic() - started:.0f} s so far)"
                    )
                    last_output[0] = time.monotonic()

        beat = threading.Thread(target=heartbeat, name="dcfire-build-heartbeat", daemon=True)
        beat.start()
        tail: list[str] = []
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
                    detail = str(chunk.get("error", "")).strip()
                    log = "\n".join(tail[-15:])
                    raise StartupError(
                        f"building the image for {names} from {build.context} failed: {detail}"
                        + (f"\nlast build output:\n{log}" if log else "")
                    )
                line = str(chunk.get("stream", "")).rstrip()
                if line:
                    tail.append(line)
                    if line.startswith("Step "):
                        self.progress(f"  {names}: {line}")
                        last_output[0] = time.monotonic()
        except docker.errors.DockerException as exc:
            raise StartupError(
                f"building the image for {names} from {build.context} failed: {exc}"
            ) from None
        finally:
            done.set()
        self.progress(f"built {names} in {time.monotonic() - started:.1f} s")
        return tag
