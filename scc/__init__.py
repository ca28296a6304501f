"""``scc``: the operator's view of one source-config-cache deployment, through Redis only.

``scc inspect`` answers "is every replica in sync, and if not, which and why?" in one
command; ``scc resync``, ``scc token show|reset``, ``scc replicas`` and ``scc dlq`` act
on or zoom into parts of it. The package imports :mod:`shared` only (never ``watcher`` or
``service``, enforced by import-linter): it sees the fleet exactly as an operator with
Redis access would, through the keys of :mod:`shared.keys` and the heartbeat hashes of
:mod:`shared.status`.

Modules: :mod:`scc.snapshot` (the data tree = the ``--json`` shape),
:mod:`scc.judging` (the in-sync rules), :mod:`scc.inspecting` (reading Redis),
:mod:`scc.publishing` (the fenced ``resync``), :mod:`scc.rendering` (rich tables),
:mod:`scc.commands` (one function per sub-command), :mod:`scc.connecting` (the client and
error translation), :mod:`scc.errors` (exit statuses), :mod:`scc.__main__` (argparse).
"""
