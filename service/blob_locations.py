"""Where a blob event says its blob is: container and path, and the host of its URL.

Why a module of its own: routing needs the blob's container and path, and the host
check (``SCC_ALLOWED_BLOB_HOSTS``) needs the host of ``data.url``; both are read from
untrusted text, so they are derived in one place that never raises.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote, urlsplit

_SUBJECT: Final = re.compile(
    r"^/blobServices/default/containers/(?P<container>[^/]+)/blobs/(?P<path>.+)$"
)


def locate_blob(subject: str, data: Any) -> tuple[str, str] | None:
    """``(container, path)`` from a blob event's subject, else from ``data.url``.

    The subject carries the blob name as stored; ``data.url``
    (``https://{account}.blob.core.windows.net/{container}/{path}``, virtual-host style,
    any host) carries it URL-encoded, so it is decoded.
    """
    match = _SUBJECT.match(subject)
    if match:
        return match["container"], match["path"]
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    container, _, path = parts.path.lstrip("/").partition("/")
    if parts.scheme not in ("http", "https") or not container or not path:
        return None
    return unquote(container), unquote(path)


#: ``http(s)://host`` followed by a path, query, fragment or nothing: the form of every
#: blob URL, whose host ``urlsplit`` would return unchanged (no user, port or brackets).
_PLAIN_HOST: Final = re.compile(r"https?://([A-Za-z0-9.-]+)(?:[/?#]|\Z)")


def url_host(url: Any) -> str | None:
    """The lower-case host of ``url`` when it is a string with one, else None.

    Plain ``http(s)`` URLs take a regular-expression fast path (``urlsplit`` was a
    tenth of the cost of ingesting an event); anything else goes through ``urlsplit``.
    """
    if not isinstance(url, str):
        return None
    plain = _PLAIN_HOST.match(url)
    if plain:
        return plain[1].lower()
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None
