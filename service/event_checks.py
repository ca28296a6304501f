"""Limits a request body must keep before any of its events is routed or written.

Why a module of its own: a body that the JSON parser accepts can still be one that cannot
be stored faithfully -- nested deeper than the encoder (or MongoDB, 100 levels) goes, or
carrying integers that orjson silently turns into floats (outside the signed/unsigned
64-bit range). Judging that up front, for the whole body, is what keeps a hostile event
from failing half-way through a batch, after its neighbours were already written.

Invariant: :func:`check_document` either returns the document to store or raises
:class:`LimitError` whose message names the first offending place (``events[3].data``);
it never raises anything else, whatever the parsed document (bounded work: one
iterative pass, no recursion). An integer outside the 64-bit range is kept exact, as the
string of its digits, never rounded to a float.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

#: Deepest nesting of arrays/objects accepted in one event (the body array not counted).
MAX_DEPTH: Final = 32
#: orjson reads integers in [-2**63, 2**64) exactly; anything wider becomes a float.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
#: A run of 19 digits is the only way to write an integer outside that range; it is a
#: number token (not inside a string, like Event Grid's ``sequencer``) only when it starts
#: a value and ends one (see :func:`_wide_integer_token`). Found by folding every digit to
#: ``9`` and a substring search: ``re``'s ``\d{19}`` cost 40 ns a byte.
_FOLD_DIGITS: Final = bytes.maketrans(b"0123456789", b"9" * 10)
_RUN: Final = b"9" * 19
_NINES: Final = re.compile(b"9*")  # the rest of a run, at C speed
_MINUS: Final = ord("-")
_BEFORE_VALUE: Final = frozenset(b"[:, \t\n\r")
_AFTER_VALUE: Final = frozenset(b",]} \t\n\r")


class LimitError(ValueError):
    """The body breaks a limit of this module; ``str(e)`` names where."""


def check_document(body: bytes, document: Any, *, where: str) -> Any:
    """``document`` (parsed from ``body``) as it is to be stored, or :class:`LimitError`.

    ``where`` names the document's root in messages (``events`` for a batch, ``event``
    for a single CloudEvent). Wide integers come back as strings of their digits.
    """
    # No path can nest deeper than there are brackets in the body: a small body is not
    # walked for depth at all (every opening bracket counted, in strings too: never less).
    may_be_deep = body.count(b"{") + body.count(b"[") > MAX_DEPTH + 1
    long_digits = _wide_integer_token(body)
    if not may_be_deep and not long_digits:
        return document
    too_deep, has_float = _scan(document)
    if too_deep:
        _check_depth(document, where)  # raises, naming the place
    # orjson turns a wide integer into a float: without any float in the document, a long
    # digit run is inside a string (Event Grid's ``sequencer`` has them) and needs no re-parse.
    if has_float and long_digits:
        return _exact_integers(body)
    return document


def _wide_integer_token(body: bytes) -> bool:
    """Whether a 19+ digit run may be a number token (a run in a string may pass too:
    the document is then only walked, never changed)."""
    folded = body.translate(_FOLD_DIGITS)
    at = folded.find(_RUN)
    while at != -1:
        # ``find`` starts past the previous run (or at 0), so ``at`` begins this run.
        start, end = at, _NINES.match(folded, at).end()  # type: ignore[union-attr]  # 9* always matches
        if start > 0 and body[start - 1] == _MINUS:
            start -= 1
        if (start == 0 or body[start - 1] in _BEFORE_VALUE) and (
            end == len(body) or body[end] in _AFTER_VALUE
        ):
            return True
        at = folded.find(_RUN, end)
    return False


def _scan(document: Any) -> tuple[bool, bool]:
    """(nested too deep, holds a float): one pass that builds no place names (the slow
    :func:`_check_depth` names the place only for a document that is too deep)."""
    kind = type(document)
    if kind is not dict and kind is not list:
        return False, kind is float
    has_float = False
    stack: list[tuple[Any, int]] = [(document, -1 if kind is list else 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True, has_float
        for v in node.values() if type(node) is dict else node:
            t = type(v)
            if t is dict or t is list:
                stack.append((v, depth + 1))
            elif t is float:
                has_float = True
    return False, has_float


def _check_depth(document: Any, where: str) -> bool:
    """Raise if nested too deep; else whether any value in ``document`` is a float."""
    batch = isinstance(document, list)
    stack: list[tuple[Any, int, str]] = [(document, -1 if batch else 0, where)]
    has_float = False
    while stack:
        node, depth, place = stack.pop()
        if depth > MAX_DEPTH:
            raise LimitError(f"{place}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, dict | list):
                    stack.append((v, depth + 1, f"{place}.{k}"))
                elif isinstance(v, float):
                    has_float = True
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, dict | list):
                    stack.append((v, depth + 1, f"{place}[{i}]"))
                elif isinstance(v, float):
                    has_float = True
    return has_float


def _exact_int(text: str) -> int | str:
    value = int(text)
    return value if _INT_MIN <= value <= _INT_MAX else text


def _exact_integers(body: bytes) -> Any:
    # Only bodies with a 19-digit run get here; the standard library's parser hands every
    # integer literal to ``parse_int`` exactly as written (depth was checked first, and
    # orjson already refused whatever the standard library would accept beyond JSON).
    try:
        return json.loads(body, parse_int=_exact_int)
    except (ValueError, RecursionError) as e:
        raise LimitError(f"body: not valid JSON ({e})") from None


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """Whether ``host`` is one of ``allowed`` (entries ``*.suffix`` match any subdomain).

    An empty ``allowed`` allows every host; a missing host is allowed only then.
    """
    if not allowed:
        return True
    if host is None:
        return False
    host = host.lower().rstrip(".")
    if host in allowed:
        return True
    return any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in allowed)
