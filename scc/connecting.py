"""The CLI's one Redis connection, and the only place redis-py errors are translated.

Invariant: no credential ever reaches the terminal. Every URL the CLI prints goes through
:func:`redact_url`, and a redis-py error becomes :class:`~scc.errors.RedisUnavailable`
whose message names the redacted URL and the error class, with any password scrubbed
from the library's text. The client is redis-py's synchronous one with bounded timeouts:
the CLI is short-lived, and a hung Redis must end in an error line, not a hang.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis

from scc.errors import RedisUnavailable

#: ``CLIENT SETNAME`` of the CLI's connection, so ``CLIENT LIST`` shows who is looking.
CLIENT_NAME: Final = "scc-cli"
_MASK: Final = "***"
_USERINFO = re.compile(r"//[^/@]*@")


def redact_url(url: str) -> str:
    """``url`` with its password (userinfo or ``?password=``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
            netloc = f"{user}:{_MASK}@{host}" if ":" in userinfo else f"{_MASK}@{host}"
        query = urlencode(
            [(k, _MASK if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)],
            safe="*",
        )
        # Built by hand: urlunsplit drops the empty authority of ``unix:///path``.
        shown = f"{parts.scheme}://{netloc}{parts.path}"
        shown += f"?{query}" if query else ""
        return shown + (f"#{parts.fragment}" if parts.fragment else "")
    except ValueError:
        return _USERINFO.sub(f"//{_MASK}@", url.split("?", 1)[0])


def secrets_in(url: str) -> list[str]:
    """The password(s) ``url`` carries, to scrub them from any text shown to the operator."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [unquote(parts.password)] if parts.password else []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    return found


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret of at least 3 characters replaced by ``***``."""
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, _MASK)
    return text


def open_redis(url: str, *, timeout: float) -> redis.Redis:
    """A synchronous client (bytes replies) whose connect and reads time out after ``timeout``."""
    try:
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            client_name=CLIENT_NAME,
            decode_responses=False,
        )
    except ValueError as e:  # a URL redis-py cannot parse
        detail = scrub(str(e), secrets_in(url))
        raise RedisUnavailable(f"bad Redis URL {redact_url(url)} ({detail})") from e


def describe(error: redis.RedisError, url: str) -> str:
    """The one line an operator reads for ``error`` raised while talking to ``url``."""
    shown = redact_url(url)
    detail = scrub(str(error).strip() or "no detail", secrets_in(url))
    kind = type(error).__name__
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return f"cannot reach Redis at {shown} ({kind}: {detail})"
    return f"Redis at {shown} refused a command ({kind}: {detail})"


@contextmanager
def translated_errors(url: str) -> Iterator[None]:
    """Re-raise any redis-py error inside the block as :class:`RedisUnavailable`."""
    try:
        yield
    except redis.RedisError as e:
        raise RedisUnavailable(describe(e, url)) from e
