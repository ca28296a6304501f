"""How a fired fail point turns into the error reply mongod would send.

Kept apart from the server loop so getMore (``failGetMoreAfterCursorCheckout``) and the
command dispatcher (``failCommand`` and the ``doubleFault`` rules) build the same error:
the fail point's ``errorLabels`` when it names them, otherwise the labels the server
attaches for what it knows at that moment (see :mod:`.failpoints`).
"""

from __future__ import annotations

from typing import Any

from .changestreams import StreamCursor, is_change_stream
from .errors import STATE_CHANGE_CODES, CommandError, server_labels
from .failpoints import FAIL_GET_MORE, FailPoint
from .state import State


def injected_error(state: State, point: FailPoint, name: str, cmd: dict[str, Any]) -> CommandError:
    """The error reply a fired fail point gives ``name`` (labels as the server adds)."""
    data = point.data
    code = int(data.get("errorCode", 1))
    if isinstance(data.get("errorLabels"), list):
        labels = [str(label) for label in data["errorLabels"]]
    else:
        checked_out = point.after_checkout or point.name == FAIL_GET_MORE
        is_stream = _is_stream_command(state, name, cmd, checked_out)
        labels = server_labels(code, name, cmd, is_stream)
    extra: dict[str, Any] = {}
    if isinstance(data.get("errorExtraInfo"), dict):
        extra.update(data["errorExtraInfo"])
    if code in STATE_CHANGE_CODES:
        if point.bump_topology:
            # A real primary only says this after a state change, which bumps
            # topologyVersion and answers every waiting awaitable hello at once.
            state.topology.bump()
        extra["topologyVersion"] = state.topology.version()
    if point.name == FAIL_GET_MORE:
        default = "Hit the 'failGetMoreAfterCursorCheckout' failpoint"
    elif point.after_checkout:
        default = f"injected by the MongoDB wire double: {name} failed"
    else:
        default = "Failing command via 'failCommand' failpoint"
    return CommandError(
        code,
        str(data.get("errmsg") or default),
        code_name_=data.get("codeName"),
        labels=labels,
        extra=extra,
    )


def _is_stream_command(state: State, name: str, cmd: dict[str, Any], checked_out: bool) -> bool:
    if name == "aggregate":
        return is_change_stream(cmd.get("pipeline"))
    if name == "getMore" and checked_out and isinstance(cmd.get("getMore"), int):
        cursor = state.cursors.peek(int(cmd["getMore"]))
        return cursor is None or isinstance(cursor, StreamCursor)
    return False
