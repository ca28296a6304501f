"""A worker process hosting hundreds of lightweight subscribers that run the real apply path.

Why: the fan-out curve needs up to 1,000 subscribers on a two-core machine, so a
subscriber here is only what every replica must do per message -- no HTTP, no MongoDB,
no heartbeat bookkeeping: one Redis connection (a bare asyncio protocol reading RESP
with hiredis, so the receiving side costs what it must), then for every message
:func:`shared.batches.decode_batch`, :mod:`service.sequencing` (``decide_batch`` /
``take_batch``) and :meth:`service.applying.Applier.apply_batch` into a
:class:`~service.snapshot.Snapshot` of its own. A subscriber starts at the first message
it receives (a replica would load first); a message that proves a loss (a gap) is
counted and the subscriber starts over at it, where a replica would reload.

Each change a benchmark publishes carries ``bench_t0`` (``perf_counter_ns`` when the
change was due; CLOCK_MONOTONIC is system-wide on Linux) and ``bench_step``; a worker
keeps, per step, a histogram of ``applied - bench_t0`` over every (subscriber, change)
pair, in buckets 5 % wide (:func:`bucket_of`).

Protocol (the :class:`bench.replicas.WorkerSet` one, plus ``STATS``): ``READY`` once
every subscriber is subscribed; on ``STATS <step> <last_seq> <timeout_s>`` it waits
until every subscriber has taken ``last_seq`` (or the timeout), then prints one JSON line
with that step's histogram, deliveries, how many subscribers fell short, gaps and the
process CPU seconds since the previous ``STATS``; on ``STOP`` it writes a per-subscriber
report file and prints ``DONE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import hiredis
import orjson

from service.applying import Applier
from service.sequencing import Position, Sequencer, Verdict, digest
from service.snapshot import Snapshot
from service.subscribing import collection_paused
from shared.batches import decode_batch
from shared.errors import MessageError

T0_FIELD: Final = "bench_t0"
STEP_FIELD: Final = "bench_step"
#: Histogram buckets grow by 5 %, from 1 µs: bucket k holds latencies below 1 µs × 1.05^(k+1).
_GROWTH: Final = 1.05
_LOG_GROWTH: Final = math.log(_GROWTH)


def bucket_of(ns: int) -> int:
    """The histogram bucket of a latency of ``ns`` nanoseconds."""
    return max(0, int(math.log(max(ns, 1_000) / 1_000) / _LOG_GROWTH))


def bucket_upper_ns(bucket: int) -> float:
    """The upper edge of ``bucket`` (what a percentile read from the histogram reports)."""
    return 1_000 * _GROWTH ** (bucket + 1)


def quantile_ns(histogram: dict[int, int], q: float) -> float:
    """The ``q``-quantile (0..1) of a bucket histogram, NaN when it is empty."""
    total = sum(histogram.values())
    if not total:
        return math.nan
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_upper_ns(bucket)
    return bucket_upper_ns(max(histogram))


class _NoStore:
    """A ConfigStore the subscribers never need: changes carry their documents."""

    async def read_time(self) -> None:
        raise RuntimeError("a benchmark change asked for a refetch")

    async def find_by_key(self, key: str) -> None:
        raise RuntimeError("a benchmark change asked for a refetch")


class LightSubscriber:
    """One subscriber's state: sequencer, snapshot, applier, and what it measured."""

    def __init__(self, stats: dict[int, dict[int, int]]) -> None:
        self.sequencer = Sequencer()
        self.snapshot = Snapshot()
        self.applier = Applier(cache=None, store=_NoStore())  # type: ignore[arg-type]
        self.stats = stats  # step -> bucket -> count, shared by the process
        self.started = False
        self.gaps = 0
        self.rejected = 0
        self.subscribed = asyncio.Event()

    @property
    def seq(self) -> int:
        """The last seq taken."""
        return self.sequencer.position.seq

    async def handle(self, raw: bytes) -> None:
        """What ``service.subscribing.Subscriber`` does with one message, timed (the cyclic
        garbage collector held off meanwhile, as there)."""
        with collection_paused():
            await self._handle(raw)

    async def _handle(self, raw: bytes) -> None:
        try:
            batch = decode_batch(raw)
        except MessageError:
            self.rejected += 1
            return
        head = batch.first
        if not self.started:
            start = head.seq if head.kind == "heartbeat" else head.seq - 1
            self.sequencer.reset(Position(seq=start, epoch=head.epoch, term=head.term))
            self.started = True
        body = None if head.kind == "heartbeat" else digest(raw)
        decision = self.sequencer.decide_batch(batch, body)
        if decision.verdict is Verdict.RESYNC:
            self.gaps += 1
            last = batch.last
            self.sequencer.reset(Position(seq=last.seq, epoch=last.epoch, term=last.term))
            return
        if decision.verdict is not Verdict.APPLY:
            if decision.verdict is Verdict.CONFIRM:
                self.sequencer.take_batch(batch, body)
            return
        self.sequencer.take_batch(batch, body, decision.skip)
        todo = batch.changes[decision.skip :]
        await self.applier.apply_batch(todo, self.snapshot)
        now = time.perf_counter_ns()
        for change in todo:
            doc = change.doc
            if doc is None or T0_FIELD not in doc:
                continue
            per_step = self.stats.setdefault(int(doc[STEP_FIELD]), {})
            bucket = bucket_of(now - int(doc[T0_FIELD]))
            per_step[bucket] = per_step.get(bucket, 0) + 1


class _Connection(asyncio.Protocol):
    """RESP in, ``message`` payloads onto the process queue (in arrival order)."""

    def __init__(
        self, sub: LightSubscriber, queue: deque[tuple[LightSubscriber, bytes]], wake: Any
    ) -> None:
        self._sub = sub
        self._queue = queue
        self._wake = wake
        self._reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if reply[0] == b"message":
                self._queue.append((self._sub, reply[2]))
            elif reply[0] == b"subscribe":
                self._sub.subscribed.set()
        self._wake()


class Host:
    """Every subscriber of this process, the queue they share, and the step statistics."""

    def __init__(self, count: int, urls: Sequence[str], channel: str) -> None:
        self.stats: dict[int, dict[int, int]] = {}
        self.subscribers = [LightSubscriber(self.stats) for _ in range(count)]
        self._urls = list(urls)
        self._channel = channel.encode()
        self._queue: deque[tuple[LightSubscriber, bytes]] = deque()
        self._ready = asyncio.Event()
        self._transports: list[asyncio.BaseTransport] = []
        self._cpu = time.process_time()

    async def connect(self) -> None:
        """Open one connection per subscriber (spread over the URLs) and subscribe each."""
        loop = asyncio.get_running_loop()
        channel = self._channel
        command = b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel)
        for i, sub in enumerate(self.subscribers):
            url = urlsplit(self._urls[i % len(self._urls)])
            transport, _ = await loop.create_connection(
                lambda sub=sub: _Connection(sub, self._queue, self._ready.set),  # type: ignore[misc]
                url.hostname,
                url.port,
            )
            transport.write(command)  # type: ignore[attr-defined]
            self._transports.append(transport)
        for sub in self.subscribers:
            await sub.subscribed.wait()
        self._cpu = time.process_time()  # what connecting cost is not a step's

    async def consume(self) -> None:
        """Handle queued messages in arrival order, forever."""
        queue = self._queue
        while True:
            await self._ready.wait()
            self._ready.clear()
            while queue:
                sub, raw = queue.popleft()
                await sub.handle(raw)

    async def step_stats(self, step: int, last_seq: int, timeout_s: float) -> dict[str, Any]:
        """Wait until every subscriber took ``last_seq`` (or the timeout); the step's numbers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(s.seq >= last_seq for s in self.subscribers) and not self._queue:
                break
            await asyncio.sleep(0.01)
        histogram = self.stats.pop(step, {})
        cpu, self._cpu = time.process_time() - self._cpu, time.process_time()
        return {
            "step": step,
            "histogram": {str(k): v for k, v in histogram.items()},
            "deliveries": sum(histogram.values()),
            "behind": sum(1 for s in self.subscribers if s.seq < last_seq),
            "gaps": sum(s.gaps for s in self.subscribers),
            "rejected": sum(s.rejected for s in self.subscribers),
            "backlog": len(self._queue),
            "cpu_s": cpu,
        }

    def close(self) -> None:
        """Close every connection."""
        for transport in self._transports:
            transport.close()


async def _serve(args: argparse.Namespace) -> dict[str, Any]:
    host = Host(args.count, args.urls.split(","), args.channel)
    consumer = asyncio.create_task(host.consume(), name="consume")
    async with asyncio.timeout(args.ready_timeout):
        await host.connect()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "STOP":
                break
            if line[0] == "STATS":
                step, last_seq, timeout_s = int(line[1]), int(line[2]), float(line[3])
                stats = await host.step_stats(step, last_seq, timeout_s)
                sys.stdout.write(orjson.dumps(stats).decode() + "\n")
                sys.stdout.flush()
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        host.close()
    return {
        "replicas": [
            {"seq": s.seq, "size": len(s.snapshot.by_key), "gaps": s.gaps} for s in host.subscribers
        ]
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.light_subscribers --count N --urls redis://… --channel C --report F``."""
    parser = argparse.ArgumentParser(prog="python -m bench.light_subscribers")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--urls", required=True, help="comma-separated redis:// URLs")
    parser.add_argument("--channel", required=True)
    parser.add_argument("--kind", default="light", help="(WorkerSet names every worker's kind)")
    parser.add_argument("--name", default="light")
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    parser.add_argument("--report", required=True, help="file to write the final report to")
    args = parser.parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(_serve(args))
    report = Path(args.report)
    partial = report.with_suffix(".partial")
    partial.write_bytes(orjson.dumps(result))
    partial.replace(report)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
