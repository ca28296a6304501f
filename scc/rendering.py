"""Turn a :class:`~scc.snapshot.Snapshot` (or a part of it) into rich tables or JSON.

Invariant: data never becomes markup. Every value read from Redis (instance ids, errors,
dead-letter reasons: some of it comes from outside the system) enters a table as a
:class:`rich.text.Text`, so ``[bold]`` in a reason prints as ``[bold]``; and ``--json``
is written by orjson straight to the stream, never through a rich console, so it holds
no markup, colour codes or line wrapping.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import IO, Any

import orjson
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from scc.snapshot import DeadLetters, RedisPrimary, Replica, Resume, Snapshot, Watcher

_MARK_STYLE = {"silent": "bold red", "lagging": "bold red", "stalled": "bold red"}
#: Width of tables when the output is not a terminal (a pipe, a file, a test).
PIPE_WIDTH = 160
_DASH = "—"


def make_console(stream: IO[str]) -> Console:
    """A console on ``stream``: terminal width on a tty, :data:`PIPE_WIDTH` otherwise."""
    tty = stream.isatty()
    return Console(
        file=stream,
        width=None if tty else PIPE_WIDTH,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )


def write_json(stream: IO[str], document: Any) -> None:
    """``document`` (dataclasses, dicts, lists) as indented JSON and a newline."""
    stream.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    stream.flush()


def age(seconds: float | None) -> str:
    """``1.2 s``, ``3 m 04 s``, ``2 h 05 m``, ``3 d 04 h``; a dash when unknown."""
    if seconds is None:
        return _DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} m {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} m"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"


def when(timestamp: float | None) -> str:
    """A unix time as ``2026-11-24 21:33:01Z``; a dash when unknown."""
    if timestamp is None:
        return _DASH
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))


def _value(value: object) -> Text:
    return Text(_DASH if value is None or value == "" else str(value))


def _marks(marks: list[str]) -> Text:
    if not marks:
        return Text("ok", style="green")
    text = Text()
    for i, mark in enumerate(marks):
        text.append((", " if i else "") + mark.upper(), style=_MARK_STYLE.get(mark, "yellow"))
    return text


def _table(title: str, columns: Iterable[str]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def watchers_table(watchers: list[Watcher]) -> Table:
    """One row per watcher hash; the lease holder first, starred."""
    table = _table(
        f"watchers ({len(watchers)})",
        ["instance", "state", "role", "epoch", "stream lag", "last event", "last empty batch",
         "published", "resyncs", "elections", "poison", "last error", "heartbeat", "version"],
    )  # fmt: skip
    for w in watchers:
        error = f"{w.last_error} (at {when(w.last_error_at)})"
        table.add_row(
            Text(("★ " if w.holds_lease else "") + w.instance_id),
            _marks(w.marks),
            _value(w.role),
            _value(w.epoch),
            Text(age(w.stream_lag_s)),
            Text(age(w.last_event_age_s)),
            Text(age(w.last_empty_batch_age_s)),
            _value(w.events_published),
            _value(w.resyncs),
            _value(w.elections),
            _poison(w.poison_documents, w.last_poison),
            _value(error if w.last_error else None),
            Text(age(w.heartbeat_age_s)),
            _value(w.version),
        )
    return table


def replicas_table(replicas: list[Replica], seq: int | None) -> Table:
    """One row per replica hash, marks first so a problem is seen before the numbers."""
    table = _table(
        f"replicas ({len(replicas)}) — seq {_DASH if seq is None else seq}",
        ["instance", "state", "ready", "stream", "cache size", "last seq", "behind",
         "last message", "heartbeat", "epoch", "warmed at", "resyncs", "version"],
    )  # fmt: skip
    for r in replicas:
        table.add_row(
            Text(r.instance_id),
            _marks(r.marks),
            Text("yes" if r.ready else "no", style="" if r.ready else "yellow"),
            Text("active" if r.change_stream_active else "inactive"),
            _value(r.cache_size),
            _value(r.last_seq),
            _value(r.seq_behind),
            Text(age(r.last_message_age_s)),
            Text(age(r.heartbeat_age_s)),
            _value(r.epoch),
            Text(when(r.warmed_at)),
            _value(r.resyncs),
            _value(r.version),
        )
    return table


def dlq_table(dlq: DeadLetters) -> Table:
    """The newest dead-lettered events, newest first, with their reasons."""
    shown = f"newest {len(dlq.newest)} of {dlq.length}" if dlq.newest else "empty"
    table = _table(f"dead letters {dlq.stream} ({shown})", ["id", "at", "reason", "event"])
    for entry in dlq.newest:
        event = " ".join(f"{k}={v}" for k, v in sorted(entry.fields.items()))
        table.add_row(
            Text(entry.id), Text(when(entry.at)), _value(entry.reason), _value(event[:200])
        )
    return table


def token_lines(resume: Resume | None) -> Text:
    """The resume token in a few lines (``scc token show``, and one row of inspect)."""
    if resume is None:
        return Text("none saved (a leader starting now begins at 'now' and publishes resync)")
    text = Text()
    text.append(f"saved {age(resume.age_s)} ago at {when(resume.saved_at)}")
    text.append(f" by {resume.saved_by or _DASH} (epoch {_value(resume.epoch)})\n")
    if resume.cluster_time is None:
        text.append("cluster time not recorded (no change seen since the stream opened)\n")
    else:
        text.append(f"points at cluster time {when(resume.cluster_time)}")
        text.append(f" ({age(resume.cluster_time_age_s)} ago)\n")
    text.append(f"token {resume.token}")
    return text


def _overview(s: Snapshot) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("namespace", Text(f"{s.namespace}   (Redis {s.redis_url}, at {when(s.taken_at)})"))
    if s.leader is None:
        grid.add_row("leader", Text("none holds the lease", style="bold red"))
    else:
        lease = (
            "no expiry!" if s.leader.lease_ms_left is None else age(s.leader.lease_ms_left / 1000)
        )
        grid.add_row("leader", Text(f"{s.leader.instance_id}   epoch {_value(s.epoch)}   "
                                    f"lease left {lease}"))  # fmt: skip
    grid.add_row("seq", _value(s.seq))
    grid.add_row("resume token", token_lines(s.resume))
    channel = Text(
        f"{s.channel.name}: {s.channel.subscribers} subscriber(s), "
        f"{s.channel.registered_replicas} registered replica(s)"
    )
    if s.channel.difference:
        channel.append(f"   difference {s.channel.difference:+d}", style="bold red")
    grid.add_row("channel", channel)
    grid.add_row("events", Text(f"accepted {s.accepted.length}   dead-lettered {s.dlq.length}"))
    grid.add_row("redis", primary_line(s.redis))
    return grid


def primary_line(p: RedisPrimary) -> Text:
    """The primary (as the sentinels name it) and the last failover, in one or two lines."""
    text = Text()
    if p.via_sentinel:
        where = p.address or "unknown (no sentinel answered)"
        text.append(f"primary {where} (sentinel master {p.master_name}, ")
        text.append(f"{_value(p.known_replicas)} replica(s))")
    elif p.address is not None:  # Redis Cluster: the master owning the namespace's slot
        text.append(f"primary {p.address} (cluster slot owner, ")
        text.append(f"{_value(p.known_replicas)} replica(s))")
    else:
        text.append("single Redis (no Sentinel)")
    if p.last_failover_at is None:
        return text
    text.append(f"\nlast failover {age(p.last_failover_age_s)} ago at {when(p.last_failover_at)}")
    text.append(f" from {p.failover_from or _DASH}")
    if p.not_resynced_since:
        stale = ", ".join(p.not_resynced_since)
        text.append(f"   not reloaded since: {stale}", style="yellow")
    else:
        text.append("   every replica reloaded since", style="green")
    return text


def verdict(s: Snapshot, *, only: tuple[str, ...] = ()) -> Text:
    """``in sync``, or one line per problem (restricted to subjects starting with ``only``)."""
    problems = [p for p in s.problems if not only or p.subject.startswith(only)]
    if not problems:
        return Text("in sync", style="bold green")
    text = Text()
    text.append(f"{len(problems)} problem(s):", style="bold red")
    for p in problems:
        text.append(f"\n  {p.subject}: ")
        text.append(p.mark.upper(), style=_MARK_STYLE.get(p.mark, "yellow"))
        text.append(f" — {p.detail}")
    return text


def render_inspect(s: Snapshot) -> RenderableType:
    """The one-screen view of ``scc inspect``."""
    parts: list[RenderableType] = [_overview(s), watchers_table(s.watchers)]
    parts.append(replicas_table(s.replicas, s.seq))
    if s.dlq.length:
        parts.append(dlq_table(s.dlq))
    parts.append(verdict(s))
    return Group(*parts)


def _poison(count: int, last: str) -> Text:
    """The poison-document count, in red with the last one named when there are any."""
    if not count:
        return _value(count)
    return Text(f"{count} (last {last})" if last else str(count), style="bold red")
