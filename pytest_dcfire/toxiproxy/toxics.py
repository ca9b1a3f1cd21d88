"""Toxic types: the attributes the HTTP API shows, and what each type does to a link's bytes.

Every type follows the behaviour Toxiproxy 2.x documents for the toxic of the same name, so a
fault written against the embedded server means the same thing against a real Toxiproxy.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "TOXIC_TYPES",
    "Chunk",
    "Direction",
    "Eof",
    "EofKind",
    "Item",
    "ResetPeerToxic",
    "Stub",
    "Toxic",
    "ToxicSpec",
]


class Direction(enum.IntEnum):
    """Which half of a connection a toxic acts on (client to upstream, or back)."""

    UPSTREAM = 0
    DOWNSTREAM = 1

    @classmethod
    def parse(cls, stream: str) -> Direction | None:
        """Toxiproxy accepts the stream name in any letter case."""
        lowered = stream.lower()
        if lowered == "upstream":
            return cls.UPSTREAM
        if lowered == "downstream":
            return cls.DOWNSTREAM
        return None


class Chunk:
    """Bytes read from one socket, stamped with the loop time they were read at."""

    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts


class EofKind(enum.IntEnum):
    """How a link ends: a half-close passed on, or a full close of both sockets."""

    SOFT = 0
    HARD = 1


class Eof:
    """End of a link's byte stream; travels through the toxics behind the last chunk."""

    __slots__ = ("kind",)

    def __init__(self, kind: EofKind) -> None:
        self.kind = kind


Item = Chunk | Eof


class Stub:
    """One toxic's place on one link: a queue in, a callable out, and per-link state.

    A toxic never keeps bytes in local variables across an ``await``: it looks at the head of
    its queue and only removes it when it forwards or drops it, so interrupting the toxic (to
    update or remove it) never loses or reorders data.
    """

    __slots__ = (
        "closer",
        "inq",
        "loop",
        "out",
        "release",
        "rng",
        "state",
        "taken",
        "task",
        "waiter",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        out: Callable[[Item], None],
        release: Callable[[int], None],
        closer: Callable[[], None],
        rng: random.Random,
        state: object,
    ) -> None:
        self.loop = loop
        self.inq: deque[Item] = deque()
        self.out = out
        self.release = release
        self.closer = closer
        self.rng = rng
        self.state = state
        #: The toxic is working on the head chunk (Toxiproxy's toxic would have taken it off
        #: its input channel), so interrupting a toxic that flushes passes it on at once.
        self.taken = False
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    # -- used by the link -------------------------------------------------------------------

    def put(self, item: Item) -> None:
        self.inq.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task = None

    def interrupt(self, toxic: Toxic) -> bool:
        """Stop the toxic's task, as Toxiproxy's ``InterruptToxic`` does before it re-runs,
        rewires or removes the toxic; False if the toxic does not listen any more.

        A toxic that never drops data passes on the chunk it was working on ("Don't drop any
        data on the floor"); one that ends the link once it has data is left to do so.
        """
        if self.taken and toxic.ends_once_taken:
            return False
        self.cancel()
        if self.taken and toxic.flush_on_interrupt and self.inq:
            self.forward()
        self.taken = False
        return True

    # -- used by toxics ---------------------------------------------------------------------

    async def peek(self) -> Item:
        """Wait for the head item without removing it."""
        while not self.inq:
            await self._wait(None)
        return self.inq[0]

    async def peek_until(self, deadline: float | None) -> Item | None:
        """Like ``peek``, but ``None`` once the loop time reaches ``deadline``."""
        while not self.inq:
            if deadline is not None and self.loop.time() >= deadline:
                return None
            await self._wait(deadline)
        return self.inq[0]

    async def _wait(self, deadline: float | None) -> None:
        waiter = self.loop.create_future()
        self.waiter = waiter
        handle = self.loop.call_at(deadline, _wake, waiter) if deadline is not None else None
        try:
            await waiter
        finally:
            if self.waiter is waiter:
                self.waiter = None
            if handle is not None:
                handle.cancel()

    def forward(self) -> None:
        """Pass the head item on unchanged."""
        self.taken = False
        self.out(self.inq.popleft())

    def forward_all(self) -> bool:
        """Pass every queued item on; True if the last one was the end of the stream."""
        inq, out = self.inq, self.out
        item: Item | None = None
        while inq:
            item = inq.popleft()
            out(item)
            if isinstance(item, Eof):
                return True
        return False

    def forward_part(self, size: int) -> None:
        """Pass the first ``size`` bytes of the head chunk on; keep the rest at the head."""
        head = self.inq[0]
        assert isinstance(head, Chunk)
        if size >= len(head.data):
            self.forward()
            return
        self.out(Chunk(head.data[:size], head.ts))
        head.data = head.data[size:]

    def drop(self) -> None:
        """Discard the head chunk (its bytes are released from the link's accounting)."""
        self.taken = False
        head = self.inq.popleft()
        if isinstance(head, Chunk):
            self.release(len(head.data))

    def end(self, kind: EofKind) -> None:
        """End the link here: drop what is queued and send an end of stream of ``kind``."""
        while self.inq:
            self.drop()
        self.closer()
        self.out(Eof(kind))


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Toxic:
    """Base of the toxic types: attribute names with their defaults, and the per-link pipe."""

    type_name: ClassVar[str]
    #: The name Toxiproxy's error messages give the type.
    go_name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()
    #: Interrupted while working on a chunk, the toxic passes it on whole (see Stub.interrupt).
    flush_on_interrupt: ClassVar[bool] = False
    #: Once it has data the toxic cannot be interrupted: it ends the link (see Stub.interrupt).
    ends_once_taken: ClassVar[bool] = False

    def __init__(self, attributes: dict[str, int]) -> None:
        self.attributes = attributes

    def attr(self, name: str) -> int:
        return self.attributes.get(name, 0)

    def new_state(self) -> object:
        """Per-link state that survives updates of the toxic (only limit_data has one)."""
        return None

    async def pipe(self, stub: Stub) -> None:
        """Move items from ``stub.inq`` to ``stub.out``; return after the end of stream."""
        await noop_pipe(stub)

    def on_remove(self, stub: Stub) -> bool:
        """Called when the toxic is removed from a live link; True means the stub ended it."""
        return False


async def noop_pipe(stub: Stub) -> None:
    while True:
        await stub.peek()
        if stub.forward_all():
            return


class NoopToxic(Toxic):
    """Passes everything through; Toxiproxy registers it too, so the API accepts it."""

    type_name = "noop"
    go_name = "NoopToxic"


class LatencyToxic(Toxic):
    """Delays each chunk by ``latency`` ms, give or take up to ``jitter`` ms."""

    type_name = "latency"
    go_name = "LatencyToxic"
    fields = ("latency", "jitter")
    flush_on_interrupt = True

    async def pipe(self, stub: Stub) -> None:
        loop = stub.loop
        while True:
            item = await stub.peek()
            if isinstance(item, Chunk):
                stub.taken = True
                delay = self.attr("latency") / 1000.0
                jitter = self.attr("jitter")
                if jitter > 0:
                    delay += stub.rng.randrange(-jitter, jitter) / 1000.0
                wait = delay - (loop.time() - item.ts)
                if wait > 0:
                    await asyncio.sleep(wait)
                    # A later latency toxic adds its delay on top of this one.
                    item.ts += wait
                stub.forward()
            else:
                stub.forward()
                return


class BandwidthToxic(Toxic):
    """Lets ``rate`` KB/s through (1 KB = 1000 bytes, as in Toxiproxy); 0 lets nothing through.

    Toxiproxy passes ``rate * 100`` bytes of a chunk every 100 ms, so at rate 0 the first chunk
    (and everything behind it, the end of the stream too) waits until the toxic is updated
    or removed, which passes that chunk on whole. (A negative rate crashes Toxiproxy, in a
    slice with a negative bound; here it holds like 0.)
    """

    type_name = "bandwidth"
    go_name = "BandwidthToxic"
    fields = ("rate",)
    flush_on_interrupt = True

    async def pipe(self, stub: Stub) -> None:
        loop = stub.loop
        debt = 0.0  # seconds owed for bytes already passed
        while True:
            item = await stub.peek()
            if isinstance(item, Eof):
                stub.forward()
                return
            stub.taken = True
            rate = self.attr("rate")  # KB/s, 1 KB = 1000 bytes, as in Toxiproxy
            if rate <= 0:
                await loop.create_future()  # held until the toxic is interrupted
            debt += len(item.data) / (rate * 1000.0)
            slice_size = rate * 100  # what may pass every 100 ms
            while len(item.data) > slice_size:
                await asyncio.sleep(0.1)
                stub.forward_part(slice_size)
                debt -= 0.1
            start = loop.time()
            if debt > 0:
                await asyncio.sleep(debt)
            debt -= loop.time() - start
            stub.forward()


class SlowCloseToxic(Toxic):
    """Delays the end of the stream (the close) by ``delay`` ms."""

    type_name = "slow_close"
    go_name = "SlowCloseToxic"
    fields = ("delay",)

    async def pipe(self, stub: Stub) -> None:
        while True:
            item = await stub.peek()
            if isinstance(item, Eof):
                delay = self.attr("delay")
                if delay > 0:
                    await asyncio.sleep(delay / 1000.0)
                stub.forward()
                return
            stub.forward()


class TimeoutToxic(Toxic):
    """Drops all data; closes the link after ``timeout`` ms without data, never when it is 0.

    As in Toxiproxy (a new ``time.After`` each time round its loop), every chunk dropped
    starts the wait again, so a link that keeps sending is never closed.
    """

    type_name = "timeout"
    go_name = "TimeoutToxic"
    fields = ("timeout",)

    async def pipe(self, stub: Stub) -> None:
        timeout = self.attr("timeout") / 1000.0
        loop = stub.loop
        while True:
            deadline = loop.time() + timeout if timeout > 0 else None
            item = await stub.peek_until(deadline)
            if item is None:
                stub.end(EofKind.HARD)
                return
            if isinstance(item, Eof):
                stub.forward()
                return
            stub.drop()

    def on_remove(self, stub: Stub) -> bool:
        # Toxiproxy closes the connections a timeout toxic was holding when it is removed.
        stub.end(EofKind.HARD)
        return True


class ResetPeerToxic(Toxic):
    """On the first data (after ``timeout`` ms), closes the connection.

    The close is a reset because a connection that starts with a reset_peer toxic in its
    chain has SO_LINGER 0 on both sockets (``Connection``); as in Toxiproxy, one added to an
    open connection closes it with a FIN.
    """

    type_name = "reset_peer"
    go_name = "ResetToxic"
    fields = ("timeout",)
    # Toxiproxy's toxic waits out its timeout without listening for interrupts: updating or
    # removing it then does not stop the close.
    ends_once_taken = True

    async def pipe(self, stub: Stub) -> None:
        await stub.peek()  # data or the end of the stream, as Toxiproxy's <-stub.Input
        stub.taken = True
        timeout = self.attr("timeout")
        if timeout > 0:
            await asyncio.sleep(timeout / 1000.0)
        stub.end(EofKind.HARD)


class SlicerToxic(Toxic):
    """Cuts chunks into pieces around ``average_size`` bytes, ``delay`` µs apart."""

    type_name = "slicer"
    go_name = "SlicerToxic"
    fields = ("average_size", "size_variation", "delay")
    flush_on_interrupt = True

    def slice_sizes(self, total: int, rng: random.Random) -> list[int]:
        """Split ``total`` bytes around the middle, recursively, as Toxiproxy's slicer does
        (a negative variation lowers the size it stops at; pieces stay at least a byte)."""
        average = self.attr("average_size")
        variation = self.attr("size_variation")
        sizes: list[int] = []
        stack = [(0, total)]
        while stack:
            start, end = stack.pop()
            if end - start - average <= variation or end - start <= 1:
                sizes.append(end - start)
                continue
            mid = start + (end - start) // 2
            if variation > 0:
                mid += rng.randrange(-variation, variation)
            mid = min(max(mid, start + 1), end - 1)
            stack.append((mid, end))
            stack.append((start, mid))
        return sizes

    async def pipe(self, stub: Stub) -> None:
        while True:
            item = await stub.peek()
            if isinstance(item, Eof):
                stub.forward()
                return
            stub.taken = True
            delay = self.attr("delay") / 1_000_000.0
            for size in self.slice_sizes(len(item.data), stub.rng):
                stub.forward_part(size)
                if delay > 0:
                    await asyncio.sleep(delay)


@dataclass
class _LimitState:
    """What limit_data has let through on one link; kept when the toxic is updated."""

    sent: int = 0


class LimitDataToxic(Toxic):
    """Passes ``bytes`` bytes in total on the link, then closes the connection."""

    type_name = "limit_data"
    go_name = "LimitDataToxic"
    fields = ("bytes",)

    def new_state(self) -> object:
        return _LimitState()

    async def pipe(self, stub: Stub) -> None:
        state = stub.state
        assert isinstance(state, _LimitState)
        while True:
            item = await stub.peek()
            if isinstance(item, Eof):
                stub.forward()
                return
            limit = self.attr("bytes")
            allowed = max(limit - state.sent, 0)
            size = len(item.data)
            if allowed >= size:
                stub.forward()
                state.sent += size
            else:
                if allowed:
                    stub.forward_part(allowed)
                    state.sent += allowed
                stub.drop()
            if state.sent >= limit:
                stub.end(EofKind.HARD)
                return


TOXIC_TYPES: dict[str, type[Toxic]] = {
    cls.type_name: cls
    for cls in (
        NoopToxic,
        LatencyToxic,
        BandwidthToxic,
        SlowCloseToxic,
        TimeoutToxic,
        ResetPeerToxic,
        SlicerToxic,
        LimitDataToxic,
    )
}


@dataclass
class ToxicSpec:
    """A toxic as the API knows it: its identity, probability and current behaviour."""

    name: str
    type: str
    stream: str
    direction: Direction
    toxicity: float
    toxic: Toxic

    def to_json(self) -> dict[str, object]:
        attributes = {name: self.toxic.attr(name) for name in self.toxic.fields}
        toxicity: float | int = self.toxicity
        if float(toxicity).is_integer():
            toxicity = int(toxicity)
        return {
            "attributes": attributes,
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": toxicity,
        }
