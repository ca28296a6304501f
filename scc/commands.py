"""One function per ``scc`` sub-command: settings → Redis → data → output → exit status.

Invariant: every command opens at most one Redis client, closes it, and lets no
redis-py exception escape (they become :class:`~scc.errors.RedisUnavailable` inside
:func:`_session`). Output goes to the ``out`` stream given (stdout in production,
a buffer in tests); refusals and failures are raised as :class:`~scc.errors.CliError`
for :func:`scc.__main__.main` to print as one line.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import redis
from rich.console import RenderableType
from rich.live import Live
from rich.text import Text

from scc.connecting import open_redis, redact_url, translated_errors
from scc.errors import (
    EXIT_OK,
    EXIT_PROBLEM,
    CliError,
    NotConfirmed,
    NothingDeployed,
)
from scc.inspecting import collect, read_dead_letters, read_token
from scc.publishing import publish_resync
from scc.rendering import (
    dlq_table,
    make_console,
    render_inspect,
    replicas_table,
    token_lines,
    verdict,
    write_json,
)
from scc.snapshot import Rules, Snapshot
from shared import layout
from shared.channels import sharded
from shared.keys import Keys, LegacyKeys
from shared.settings import RedisSettings, SecuritySettings, TimingSettings, load_group


@dataclass(frozen=True, slots=True)
class Target:
    """Which Redis and namespace a command talks to (the URL may hold a password)."""

    url: str
    keys: Keys
    timeout: float
    sentinel_password: str | None = None

    @property
    def shown_url(self) -> str:
        """The URL with credentials redacted, safe to print."""
        return redact_url(self.url)


def target(args: argparse.Namespace) -> Target:
    """Settings from the environment, overridden by ``--redis-url`` / ``--namespace``."""
    overrides: dict[str, Any] = {}
    if args.redis_url is not None:
        overrides["url"] = args.redis_url
    if args.namespace is not None:
        overrides["namespace"] = args.namespace
    settings = load_group(RedisSettings, **overrides)
    return Target(
        url=settings.url.get_secret_value(),
        keys=Keys(settings.namespace),
        timeout=args.timeout,
        sentinel_password=(
            None
            if settings.sentinel_password is None
            else settings.sentinel_password.get_secret_value()
        ),
    )


def rules(args: argparse.Namespace) -> Rules:
    """Thresholds from ``SCC_HEARTBEAT_INTERVAL_MS``/``SCC_MAX_AWAIT_MS`` and the options."""
    overrides: dict[str, Any] = {}
    if args.heartbeat_interval_ms is not None:
        overrides["heartbeat_interval_ms"] = args.heartbeat_interval_ms
    timing = load_group(TimingSettings, **overrides)
    return Rules.from_settings(
        heartbeat_interval_ms=timing.heartbeat_interval_ms,
        max_await_ms=timing.max_await_ms,
        lag_tolerance=args.lag_tolerance,
    )


@contextmanager
def _session(where: Target) -> Iterator[redis.Redis]:
    with translated_errors(where.url):
        client = open_redis(
            where.url,
            timeout=where.timeout,
            sentinel_password=where.sentinel_password,
            slot_key=where.keys.seq,
        )
        try:
            yield client
        finally:
            client.close()


def _snapshot(where: Target, judged_by: Rules, *, dlq_count: int = 5) -> Snapshot:
    with _session(where) as client:
        snap = collect(
            client, where.keys, judged_by, redis_url=where.shown_url, dlq_count=dlq_count
        )
    if not snap.deployed:
        hint = "" if snap.seq is None else f" (seq {snap.seq} and other state remain)"
        raise NothingDeployed(
            f"nothing deployed under namespace {where.keys.namespace!r} at {where.shown_url}: "
            f"no leader, watcher or replica keys{hint}; wrong --namespace, or all stopped?"
        )
    return snap


def _status(snap: Snapshot, *, only: tuple[str, ...] = ()) -> int:
    relevant = [p for p in snap.problems if not only or p.subject.startswith(only)]
    return EXIT_PROBLEM if relevant else EXIT_OK


def watch(
    frame: Callable[[], tuple[RenderableType, int]],
    out: IO[str],
    *,
    interval: float,
    iterations: int | None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Redraw ``frame()`` every ``interval`` s until Ctrl-C (or ``iterations`` frames).

    A frame that cannot reach Redis shows the error and the loop keeps going, so an
    operator watching an outage sees the recovery. Returns the last frame's status.
    """
    status = EXIT_OK
    shown = 0
    with Live(console=make_console(out), auto_refresh=False, transient=False) as live:
        try:
            while iterations is None or shown < iterations:
                if shown:
                    sleep(interval)
                try:
                    renderable, status = frame()
                except CliError as e:
                    renderable, status = Text(f"scc: {e}", style="bold red"), e.exit_status
                live.update(renderable, refresh=True)
                shown += 1
        except KeyboardInterrupt:
            pass
    return status


def inspect_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``scc inspect``: the whole deployment, once, as JSON, or refreshed every second."""
    where, judged_by = target(args), rules(args)

    def frame() -> tuple[RenderableType, int]:
        snap = _snapshot(where, judged_by)
        return render_inspect(snap), _status(snap)

    if args.watch:
        return watch(frame, out, interval=args.interval, iterations=args.iterations)
    if args.json:
        snap = _snapshot(where, judged_by)
        write_json(out, snap)
        return _status(snap)
    renderable, status = frame()
    make_console(out).print(renderable)
    return status


def replicas_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``scc replicas``: the replica table, the channel count and their problems."""
    snap = _snapshot(target(args), rules(args))
    only = ("replica", "channel")
    console = make_console(out)
    console.print(replicas_table(snap.replicas, snap.seq))
    console.print(
        Text(
            f"{snap.channel.name}: {snap.channel.subscribers} subscriber(s) for "
            f"{snap.channel.registered_replicas} registered replica(s)"
        )
    )
    console.print(verdict(snap, only=only))
    return _status(snap, only=only)


def _operator() -> str:
    """``user@host`` of whoever runs the CLI, for the message's reason (an audit trail)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no $USER and no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def resync_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``scc resync``: one fenced ``resync`` on behalf of the current leader."""
    where = target(args)
    security = load_group(SecuritySettings)
    key = security.message_hmac_key
    reason = f"{args.reason} (scc resync by {_operator()})"
    with _session(where) as client:
        done = publish_resync(
            client,
            where.keys,
            reason=reason,
            hmac_key=None if key is None else key.get_secret_value().encode(),
        )
    make_console(out).print(
        Text(
            f"published resync: seq {done.seq}, epoch {done.epoch}, for leader {done.leader}, "
            f"delivered to {done.receivers} subscriber(s) on {where.keys.invalidations}"
            + ("" if done.attempts == 1 else f" (after {done.attempts} attempts)")
        )
    )
    return EXIT_OK


def token_show_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``scc token show``: the stored resume token."""
    where = target(args)
    with _session(where) as client:
        resume, _ = read_token(client, where.keys)
    if args.json:
        write_json(out, resume)
    else:
        make_console(out).print(Text(f"{where.keys.resume}: ").append(token_lines(resume)))
    return EXIT_OK if resume is not None else EXIT_PROBLEM


def token_reset_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``scc token reset --yes``: delete the stored resume token."""
    where = target(args)
    console = make_console(out)
    with _session(where) as client:
        resume, _ = read_token(client, where.keys)
        if resume is None:
            console.print(Text(f"nothing to delete: {where.keys.resume} does not exist"))
            return EXIT_OK
        if not args.yes:
            console.print(Text(f"{where.keys.resume}: ").append(token_lines(resume)))
            raise NotConfirmed(
                f"refusing to delete {where.keys.resume} without --yes "
                "(the next leader would start at 'now' and every replica reload)"
            )
        client.delete(where.keys.resume)
    console.print(Text(f"deleted {where.keys.resume}, which was: ").append(token_lines(resume)))
    return EXIT_OK


def dlq_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``scc dlq``: the newest dead-lettered events and their reasons."""
    where = target(args)
    with _session(where) as client:
        pipe = client.pipeline(transaction=False)
        pipe.xlen(where.keys.events_dlq)
        pipe.xrevrange(where.keys.events_dlq, count=args.count)
        length, entries = pipe.execute()
    dlq = read_dead_letters(where.keys.events_dlq, int(length), entries)
    if args.json:
        write_json(out, dlq)
    else:
        make_console(out).print(dlq_table(dlq))
    return EXIT_OK


def migrate_keys_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``scc migrate-keys``: copy the pre-hash-tag keys to the ``{ns}`` layout (shared.layout)."""
    where = target(args)
    console = make_console(out)
    with _session(where) as client:
        if sharded(client):
            raise NotConfirmed(
                "nothing to migrate in a Redis Cluster: the layout before {ns} hash tags "
                "never ran on one (its scripts span slots); migrate on the old Redis"
            )
        holder = layout.old_lease(client, where.keys)
        if holder is not None and args.dry_run:
            console.print(Text(f"watcher {holder!r} holds the old lease: stop it first"))
        elif holder is not None and not args.force:
            raise NotConfirmed(
                f"refusing: watcher {holder!r} still holds the old lease "
                f"{LegacyKeys(where.keys.namespace).leader}; stop every watcher first (or --force)"
            )
        steps = layout.plan(client, where.keys)
        conflicts = [s for s in steps if s.action == "conflict"]
        if args.dry_run or not steps:
            for step in steps:
                console.print(Text(layout.describe(step)))
            console.print(Text(f"{len(steps)} old-layout key(s) under {where.keys.namespace!r}"))
            return EXIT_OK
        if conflicts and not args.force:
            names = ", ".join(s.new for s in conflicts[:3])
            raise NotConfirmed(
                f"refusing: {len(conflicts)} key(s) exist in both layouts with different "
                f"values ({names}); nothing copied; --force replaces the new ones"
            )
        for line in layout.apply(client, steps, force=args.force, delete_old=args.delete_old):
            console.print(Text(line))
    return EXIT_OK
