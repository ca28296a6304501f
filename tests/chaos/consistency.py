"""What a user of one replica relies on, judged over every answer recorded during a run.

Why it exists: "every replica equals the collection at the end" says nothing about what
was served while the fault happened. These are pure functions over the reader's record
(:class:`tests.chaos.reading.Read`) and the writer's ledger
(:class:`tests.chaos.writer.Write`); every write, deletes included, takes a fresh ``rev``
from one counter, so revs order the versions of a key.

**Monotonic reads** (per replica, per key, in the order the replica answered): a client
that keeps asking the same replica never goes back in time.

* an answer with a ``rev`` lower than one this replica already answered is a violation;
* a 404 after ``rev`` R means "R is gone" (deleted, or renamed away); answering R again
  afterwards is a violation too: a deleted config came back. A *higher* rev after the
  404 is a new version (created again) and fine; a 404 before anything was seen is fine
  (the key did not exist yet, as far as this replica knew).

**Bounded staleness**: a read that *starts* more than ``bound_s``
(``SCC_MAX_STALENESS_S`` + 1 s) after a write was acknowledged must return that write or
a later one, whatever fault is going on:

* after an upsert with rev R: a version with rev >= R, or a 404 if a delete newer than R
  had started before the read ended (it may have been applied);
* after a delete with rev D: a 404, or a version with rev > D (created again since).

Writes that failed are *uncertain* (MongoDB may or may not have applied them): they are
never required, but an uncertain delete makes a 404 acceptable. Answers other than 200
and 404 (a 503 while MongoDB is away, no answer while a replica is stopped) are not
judged here: they are honest, and counted by the rig.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tests.chaos.reading import Read
from tests.chaos.writer import Write


def _groups(reads: Iterable[Read]) -> dict[tuple[str, str], list[Read]]:
    out: dict[tuple[str, str], list[Read]] = defaultdict(list)
    for read in reads:
        out[(read.replica, read.key)].append(read)
    for group in out.values():
        group.sort(key=lambda r: r.started)
    return out


def monotonic_violations(reads: Iterable[Read], *, t0: float = 0.0) -> list[str]:
    """Every answer that went back in time on one replica (module docstring), with times."""
    out: list[str] = []
    for (replica, key), group in sorted(_groups(reads).items()):
        top: int | None = None  # the highest rev this replica answered so far
        top_at = 0.0
        gone_at: float | None = None  # when it answered 404 after ``top``
        for read in group:
            if read.status == 404 and top is not None and gone_at is None:
                gone_at = read.started
            if read.status != 200:
                continue
            rev = -1 if read.rev is None else read.rev
            if top is None or rev > top:
                top, top_at, gone_at = rev, read.started, None
            elif rev < top or gone_at is not None:
                between = "" if gone_at is None else f", 404 at +{gone_at - t0:.3f} s,"
                out.append(
                    f"{replica} {key}: rev {top} at +{top_at - t0:.3f} s{between} "
                    f"then rev {read.rev} at +{read.started - t0:.3f} s"
                )
    return out


def stale_reads(
    reads: Iterable[Read], writes: Iterable[Write], *, bound_s: float, t0: float = 0.0
) -> list[str]:
    """Every answer older than ``bound_s`` allows (module docstring), with the write it missed."""
    by_key: dict[str, list[Write]] = defaultdict(list)
    for write in writes:
        by_key[write.key].append(write)
    out: list[str] = []
    for read in sorted(reads, key=lambda r: (r.started, r.replica)):
        if read.status not in (200, 404):
            continue
        history = by_key.get(read.key, [])
        cutoff = read.started - bound_s
        settled = [w for w in history if w.certain and w.acked <= cutoff]
        if not settled:
            continue
        required = max(settled, key=lambda w: w.rev)
        if _fresh_enough(read, required, history):
            continue
        got = f"rev {read.rev}" if read.status == 200 else "404"
        out.append(
            f"{read.replica} {read.key}: answered {got} at +{read.started - t0:.3f} s, "
            f"{read.started - required.acked:.2f} s after {required.kind} rev {required.rev} "
            f"was acknowledged (bound {bound_s:.1f} s)"
        )
    return out


def _fresh_enough(read: Read, required: Write, history: list[Write]) -> bool:
    if required.kind == "delete":
        if read.status == 404:
            return True
        return read.rev is not None and read.rev > required.rev
    if read.status == 200:
        return read.rev is not None and read.rev >= required.rev
    return any(
        w.kind == "delete" and w.rev > required.rev and w.started <= read.ended for w in history
    )
