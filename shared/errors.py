"""Exceptions shared by every process of source-config-cache.

Library errors (redis-py, PyMongo, pydantic) are chained with ``raise ... from e`` and
never leak past the adapter that caught them. The tree::

    SccError
    ├── ConfigError          a setting is missing or malformed (start-up refuses to run)
    ├── MessageError         an invalidation message could not be decoded or verified
    └── StoreUnavailable     Redis could not be reached or refused the command
"""

from __future__ import annotations

from typing import Final


class SccError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(SccError):
    """A setting is missing or malformed; the message names the ``SCC_*`` variable."""


#: Every value ``MessageError.reason`` can take; bounded so it can label a metric.
MESSAGE_ERROR_REASONS: Final = frozenset(
    {
        "oversized",
        "bad_json",
        "not_an_object",
        "unknown_version",
        "missing_field",
        "bad_field",
        "bad_signature",
        "unsigned",
    }
)


class MessageError(SccError):
    """An invalidation message is malformed, of an unknown version, or fails its HMAC.

    ``reason`` is one of :data:`MESSAGE_ERROR_REASONS` (a bounded metric label);
    the message text says what exactly was wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in MESSAGE_ERROR_REASONS:
            raise ValueError(f"unknown MessageError reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StoreUnavailable(SccError):
    """Redis could not be reached, timed out, or refused the command."""
