"""Every error the ``scc`` CLI raises on purpose, each carrying its exit status.

A command never lets a library exception reach the operator: redis-py errors are caught at
the adapter (:mod:`scc.connecting`) and re-raised as :class:`RedisUnavailable` with a
redacted URL, chained with ``raise ... from e``. :func:`scc.__main__.main` turns any
:class:`CliError` into one ``scc: ...`` line on stderr and its ``exit_status``. The tree::

    shared.errors.SccError
    ├── shared.errors.ConfigError  a SCC_* setting or option is malformed        (exit 2)
    └── CliError                   one-line message + exit_status
        ├── RedisUnavailable       cannot reach Redis, auth failed, command refused (exit 2)
        ├── NothingDeployed        no leader, watcher or replica key in the namespace (exit 2)
        ├── NoLeader               resync needs a leader to publish for             (exit 1)
        ├── LeaseMoved             the fence refused the publish twice in a row      (exit 1)
        └── NotConfirmed           a destructive command was run without --yes      (exit 1)
"""

from __future__ import annotations

from typing import Final

from shared.errors import SccError

#: Everything checked is in sync (or the command did what it was asked).
EXIT_OK: Final = 0
#: Something lags or is silent (named in the output), or an action was refused.
EXIT_PROBLEM: Final = 1
#: Redis cannot be reached / refuses us, nothing is deployed, or the configuration is bad.
EXIT_UNAVAILABLE: Final = 2


class CliError(SccError):
    """An operator-facing failure: ``str(error)`` is the whole line to print."""

    exit_status: int = EXIT_PROBLEM


class RedisUnavailable(CliError):
    """Redis could not be reached, timed out, rejected our credentials or the command."""

    exit_status = EXIT_UNAVAILABLE


class NothingDeployed(CliError):
    """No leader, watcher or replica key exists under the namespace (wrong namespace?)."""

    exit_status = EXIT_UNAVAILABLE


class NoLeader(CliError):
    """No watcher holds the lease, so there is no leader to publish on behalf of."""

    exit_status = EXIT_PROBLEM


class LeaseMoved(CliError):
    """The lease changed hands between reading it and publishing, twice in a row."""

    exit_status = EXIT_PROBLEM


class NotConfirmed(CliError):
    """A destructive command was refused because ``--yes`` was not given."""

    exit_status = EXIT_PROBLEM
