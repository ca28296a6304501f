"""The chaos suite's exceptions: the harness failing is not the system under test failing.

A scenario that finds a broken invariant does not raise: it records a violation in its
:class:`~tests.chaos.reporting.RunResult`, so one run reports every broken invariant and
the table still prints. Exceptions are for the harness itself::

    ChaosError                   anything the chaos harness raises
    ├── SetupFailed              the fleet could not be started or seeded (log tail attached)
    └── HarnessTimeout           a wait the harness needs (not an invariant) ran out of time
"""

from __future__ import annotations


class ChaosError(Exception):
    """Base of every exception raised by :mod:`tests.chaos`."""


class SetupFailed(ChaosError):
    """The fleet could not be started, seeded or reached; the message carries log tails."""


class HarnessTimeout(ChaosError):
    """A wait that is a precondition of the scenario (not an invariant) did not finish."""
