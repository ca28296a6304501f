"""What every entry point does before its real work: settings, logging, one-line failures.

A process that cannot start because of its configuration prints exactly one line naming
the variable (``scc-watcher: SCC_LEADER_TTL_MS: Input should be ...``) and exits with
status 2; it never shows a traceback for a mistake an operator made.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from shared.errors import ConfigError

_T = TypeVar("_T")

#: Exit status of a process refused at start-up because of its configuration.
EXIT_CONFIG = 2


def fail(program: str, message: str, *, status: int = EXIT_CONFIG) -> NoReturn:
    """Print ``program: message`` on stderr and exit with ``status``."""
    print(f"{program}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def or_exit(program: str, build: Callable[[], _T]) -> _T:
    """Return ``build()``, or exit with one clear line if it raises :class:`ConfigError`."""
    try:
        return build()
    except ConfigError as e:
        fail(program, f"configuration error: {e}")
