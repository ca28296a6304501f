"""Entry point of the ``scc`` console script and ``python -m scc``: the argument parser.

Invariant: :func:`main` returns an exit status and never shows a traceback for an
operator's or the environment's mistake: a :class:`~scc.errors.CliError` or a
:class:`~shared.errors.ConfigError` becomes one ``scc: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO

from scc import helptext
from scc.commands import (
    dlq_command,
    inspect_command,
    migrate_keys_command,
    replicas_command,
    resync_command,
    token_reset_command,
    token_show_command,
)
from scc.errors import EXIT_OK, EXIT_UNAVAILABLE, CliError
from shared.errors import ConfigError

PROG = "scc"
Handler = Callable[[argparse.Namespace, IO[str]], int]
_RAW = argparse.RawDescriptionHelpFormatter


def _sections(*texts: str) -> str:
    return "\n".join(texts)


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10000, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _interval_ms(text: str) -> int:
    value = int(text)
    if value < 50:
        raise argparse.ArgumentTypeError(f"must be >= 50 ms, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 3600 seconds, got {value}")
    return value


def _connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the sub-command; the sub-command's copy only sets a
    # value when given (SUPPRESS), so it never overwrites one given before it.
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--redis-url",
        default=default,
        help="Redis URL (default: $SCC_REDIS_URL, else redis://localhost:6379/0); "
        "credentials in it are never printed",
    )
    group.add_argument(
        "--namespace",
        default=default,
        help="key prefix of the deployment (default: $SCC_NAMESPACE, else scc)",
    )
    group.add_argument(
        "--timeout",
        type=_seconds,
        default=3.0 if top else argparse.SUPPRESS,
        help="seconds to wait for Redis to connect or answer (default 3)",
    )


def _judging_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("thresholds")
    group.add_argument(
        "--heartbeat-interval-ms",
        type=_interval_ms,
        default=None,
        help="the deployment's heartbeat interval T (default: $SCC_HEARTBEAT_INTERVAL_MS, "
        "else 1000); silent and lagging are judged against 3 T",
    )
    group.add_argument(
        "--lag-tolerance",
        type=_non_negative,
        default=1,
        help="messages a replica may trail seq by before it can be judged lagging (default 1)",
    )


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    summary: str,
    epilog: str,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name, help=summary, description=summary, epilog=epilog, formatter_class=_RAW
    )
    _connection_options(parser, top=False)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole ``scc`` command line."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and operate one source-config-cache deployment through Redis.",
        epilog=_sections(helptext.EXIT_STATUS, helptext.ENVIRONMENT),
        formatter_class=_RAW,
    )
    _connection_options(parser, top=True)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    inspect = _command(
        sub,
        "inspect",
        inspect_command,
        "Everything on one screen: leader, token, seq, watchers, replicas, channel, DLQ.",
        _sections(helptext.INSPECT_FIELDS, helptext.REPLICA_FIELDS, helptext.MARKS,
                  helptext.EXIT_STATUS, helptext.ENVIRONMENT),
    )  # fmt: skip
    _judging_options(inspect)
    shape = inspect.add_mutually_exclusive_group()
    shape.add_argument(
        "--json",
        action="store_true",
        help="one JSON document instead of tables (shape: scc/inspect.schema.json, "
        "schema_version 3)",
    )
    shape.add_argument(
        "--watch", action="store_true", help="redraw every --interval seconds until Ctrl-C"
    )
    inspect.add_argument(
        "--interval", type=_seconds, default=1.0, help="seconds between redraws (default 1)"
    )
    inspect.add_argument(
        "--iterations",
        type=_positive,
        default=None,
        help="with --watch: stop after this many redraws (default: until Ctrl-C)",
    )

    replicas = _command(
        sub,
        "replicas",
        replicas_command,
        "The replica table, the channel's subscriber count and the replicas' marks.",
        _sections(helptext.REPLICA_FIELDS, helptext.MARKS, helptext.EXIT_STATUS),
    )
    _judging_options(replicas)

    resync = _command(
        sub, "resync", resync_command, "Make every replica reload (fenced publish).",
        helptext.RESYNC,
    )  # fmt: skip
    resync.add_argument(
        "--reason",
        default="operator request",
        help="why (carried in the message and logged by every replica)",
    )

    token = sub.add_parser("token", help="Show or delete the stored resume token.")
    token_sub = token.add_subparsers(title="token commands", metavar="ACTION", required=True)
    show = _command(
        token_sub, "show", token_show_command, "Show the stored resume token.",
        helptext.TOKEN_FIELDS,
    )  # fmt: skip
    show.add_argument("--json", action="store_true", help="the token as JSON (null if none)")
    reset = _command(
        token_sub, "reset", token_reset_command, "Delete the stored resume token.",
        helptext.TOKEN_RESET,
    )  # fmt: skip
    reset.add_argument("--yes", action="store_true", help="really delete it")

    dlq = _command(
        sub, "dlq", dlq_command, "The newest dead-lettered blob events and their reasons.",
        helptext.DLQ_FIELDS,
    )  # fmt: skip
    dlq.add_argument("--count", type=_positive, default=20, help="how many (default 20)")
    dlq.add_argument("--json", action="store_true", help="as JSON")

    migrate = _command(
        sub, "migrate-keys", migrate_keys_command,
        "Copy the keys of the layout before hash tags (ns:...) to {ns}:... .",
        helptext.MIGRATE_KEYS,
    )  # fmt: skip
    migrate.add_argument("--dry-run", action="store_true", help="list what would be done")
    migrate.add_argument(
        "--force",
        action="store_true",
        help="replace new keys that differ from their old twins; run despite an old lease",
    )
    migrate.add_argument(
        "--delete-old", action="store_true", help="delete each old key once copied"
    )
    return parser


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None) -> int:
    """Run one ``scc`` command; return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return e.code if isinstance(e.code, int) else EXIT_UNAVAILABLE
    handler: Handler = args.handler
    try:
        return handler(args, sys.stdout if out is None else out)
    except CliError as e:
        print(f"{PROG}: {e}", file=sys.stderr, flush=True)
        return e.exit_status
    except ConfigError as e:
        print(f"{PROG}: configuration error: {e}", file=sys.stderr, flush=True)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `scc dlq | head`: the reader left; no traceback
        if out is None:
            _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
