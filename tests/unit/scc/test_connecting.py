"""Credentials never reach the operator's terminal, and redis-py errors become one line."""

from __future__ import annotations

import pytest
import redis

from scc.connecting import describe, redact_url, secrets_in, translated_errors
from scc.errors import EXIT_UNAVAILABLE, RedisUnavailable


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://alice:p%40ss@host:6380/2", "rediss://alice:***@host:6380/2"),
        ("redis://onlyuser@host", "redis://***@host"),
        ("redis://host:6379", "redis://host:6379"),
        (
            "unix:///run/redis.sock?db=1&password=hunter2",
            "unix:///run/redis.sock?db=1&password=***",
        ),
    ],
)
def test_redact_url_hides_every_password(url: str, shown: str) -> None:
    """Passwords in userinfo or in a password= query parameter are replaced by ***."""
    assert redact_url(url) == shown


def test_secrets_are_found_decoded() -> None:
    """The password is found percent-decoded, as it would appear in a library message."""
    assert secrets_in("redis://bob:p%40ss@h/0") == ["p@ss"]
    assert secrets_in("unix:///s?password=hunter2") == ["hunter2"]


def test_connection_errors_read_cannot_reach() -> None:
    """A connection error names the redacted URL and the error class, nothing secret."""
    error = redis.ConnectionError("Error 111 connecting to h:6379 with s3cret. Refused.")
    line = describe(error, "redis://:s3cret@h:6379/0")
    assert line == (
        "cannot reach Redis at redis://:***@h:6379/0 "
        "(ConnectionError: Error 111 connecting to h:6379 with ***. Refused.)"
    )


def test_auth_errors_read_cannot_reach() -> None:
    """A rejected password is reported as not reaching Redis, with its class."""
    line = describe(redis.AuthenticationError("invalid password"), "redis://:pw1@h/0")
    assert line.startswith("cannot reach Redis at redis://:***@h/0 (AuthenticationError:")


def test_refused_commands_read_refused() -> None:
    """An ACL refusal or other server error is told apart from an unreachable server."""
    line = describe(redis.ResponseError("NOPERM no permissions"), "redis://h/0")
    assert line == "Redis at redis://h/0 refused a command (ResponseError: NOPERM no permissions)"


def test_translated_errors_chain_and_set_exit_status() -> None:
    """Inside the block a redis-py error becomes RedisUnavailable (exit 2), chained."""
    with pytest.raises(RedisUnavailable) as caught:
        with translated_errors("redis://:topsecret@h/0"):
            raise redis.TimeoutError("Timeout reading from socket")
    assert caught.value.exit_status == EXIT_UNAVAILABLE
    assert isinstance(caught.value.__cause__, redis.TimeoutError)
    assert "topsecret" not in str(caught.value)
