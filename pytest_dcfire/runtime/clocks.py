"""Clocks: move the wall clock that a service's processes read, without privilege.

Debian's libfaketime is preloaded (`LD_PRELOAD`) into the services a topology marks
`clock: controllable`; each container reads its own control file (`FAKETIME_TIMESTAMP_FILE`,
re-read on every call with `FAKETIME_NO_CACHE=1`), so writing `+3600` there moves its
`time.time()` at once and writing `+0` puts it back. Monotonic clocks stay real
(`FAKETIME_DONT_FAKE_MONOTONIC=1`). The host's clock is never touched.

The library and the control files reach the containers through one Docker volume owned by
the session (no host path, so a remote engine works): a container created (never started)
from a tiny image with the library fills the volume when it is created, and every control
file is written into it through the engine's archive API. Services mount it read-only.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import docker
import docker.errors

from pytest_dcfire.errors import FireError

#: Where the clock volume is mounted in a controllable service (read-only).
MOUNT = "/run/dcfire-clock"
LIBRARY = "libfaketimeMT.so.1"
#: Where the clock image keeps the library; the session's volume is mounted there once.
IMAGE_DIR = "/opt/dcfire-clock"
DOCKERFILE = f"""\
FROM debian:bookworm-slim
RUN apt-get update \\
 && apt-get install -y --no-install-recommends libfaketime \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p {IMAGE_DIR}/ctl \\
 && cp /usr/lib/*/faketime/{LIBRARY} {IMAGE_DIR}/
LABEL io.github.pytest-dcfire.build="clock"
"""


def clock_image_tag() -> str:
    return "pytest-dcfire/clock:" + hashlib.sha256(DOCKERFILE.encode()).hexdigest()[:12]


def control_name(instance: str) -> str:
    """The control file of one instance (`api@ansan` → `api-at-ansan`)."""
    return instance.replace("@", "-at-")


def environment(instance: str) -> dict[str, str]:
    """What a controllable container's environment gets (docker exec processes too)."""
    return {
        "LD_PRELOAD": f"{MOUNT}/{LIBRARY}",
        "FAKETIME_TIMESTAMP_FILE": f"{MOUNT}/ctl/{control_name(instance)}",
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


class Clocks:
    """The session's clock volume: the library and one control file per controllable
    instance, all at `+0` until a clock fault writes them."""

    def __init__(self, engine: Any, instances: Sequence[str], progress: Any = None) -> None:
        self.engine = engine
        self.instances = tuple(instances)
        self.progress = progress
        self.volume: str | None = None
        self._holder: str | None = None

    def start(self) -> Clocks:
        """Build the image if needed, create the volume and the holder (filled at once)."""
        image = self._ensure_image()
        api = self.engine.client.api
        session = self.engine.session
        name = session.name("clock")
        api.create_volume(name=name, labels=session.labels("clock"))
        self.volume = name
        created = api.create_container(
            image,
            command=["true"],
            name=session.name("clock-holder"),
            labels=session.labels("clock"),
            host_config=api.create_host_config(binds={name: {"bind": IMAGE_DIR, "mode": "rw"}}),
        )
        self._holder = created["Id"]
        self._write({control_name(i): "+0" for i in self.instances})
        return self

    def binds(self) -> dict[str, dict[str, str]]:
        assert self.volume is not None
        return {self.volume: {"bind": MOUNT, "mode": "ro"}}

    def set(self, instances: Iterable[str], text: str) -> float:
        """Write `text` into the control files of `instances`; returns the ms it took."""
        started = time.monotonic()
        self._write({control_name(i): text for i in instances})
        return (time.monotonic() - started) * 1000.0

    def _write(self, files: Mapping[str, str]) -> None:
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            for name, text in files.items():
                body = (text + "\n").encode()
                info = tarfile.TarInfo(f"ctl/{name}")
                info.size, info.mode, info.mtime = len(body), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(body))
        assert self._holder is not None
        if not self.engine.client.api.put_archive(self._holder, IMAGE_DIR, data.getvalue()):
            raise FireError("writing the clock control files failed")

    def close(self) -> list[str]:
        """Remove the holder and the volume (only ours); never raises."""
        problems: list[str] = []
        api = self.engine.client.api
        if self._holder is not None:
            try:
                api.remove_container(self._holder, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                problems.append(f"clock holder: {exc}")
            self._holder = None
        if self.volume is not None:
            try:
                api.remove_volume(self.volume, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                problems.append(f"clock volume: {exc}")
            self.volume = None
        return problems

    def _ensure_image(self) -> str:
        tag = clock_image_tag()
        client = self.engine.client
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        if self.progress:
            self.progress(f"building the dcfire clock image {tag} (libfaketime, once)")
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            body = DOCKERFILE.encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        context.seek(0)
        for chunk in client.api.build(
            fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, decode=True
        ):
            if "error" in chunk:
                raise FireError(f"building the clock image failed: {chunk['error'].strip()}")
        return tag


def musl_loader(api: Any, container_id: str) -> str | None:
    """The musl loader a created container's image has (`/lib/ld-musl-*.so.1`), or None:
    a musl libc cannot load Debian's (glibc) libfaketime."""
    try:
        stream, stat = api.get_archive(container_id, "/lib")
    except docker.errors.NotFound:
        return None
    if stat.get("linkTarget"):  # Debian and friends: /lib -> usr/lib
        for _ in stream:
            pass
        return None
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for name in tar.getnames():
            base = name.rsplit("/", 1)[-1]
            if base.startswith("ld-musl"):
                return "/lib/" + base
    return None
