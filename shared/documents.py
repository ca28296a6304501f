"""How a source-config document is identified, the same way in the watcher and the replicas.

A config has two identities: its *key* (``SCC_KEY_FIELD``, default ``source_id``; a
non-empty string, dotted paths allowed) that lookups use, and its MongoDB ``_id`` that
change events name. Both processes must derive them identically, or a delete named by one
would miss the entry held by the other.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Final

from bson import ObjectId, json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

#: ``_id`` types that hash as themselves (checked by exact class, the hot path of a reload).
_SCALAR_IDS: Final = frozenset({str, int})


def key_of(doc: Mapping[str, Any], key_field: str) -> str | None:
    """The document's key (``key_field``, dotted paths allowed) if it is a non-empty string."""
    if "." not in key_field:
        value = doc.get(key_field)
        return value if isinstance(value, str) and value else None
    value = doc
    for part in key_field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, str) and value else None


def id_token(value: Any) -> Hashable:
    """A hashable stand-in for an ``_id`` value, equal exactly when the ``_id``\\ s are equal.

    An ObjectId stands as its 12 bytes (no other ``_id`` type yields bare ``bytes``);
    other scalars (str, int, ...) stand for themselves, tagged with their class so that
    ``True`` and ``1`` stay distinct as in MongoDB; documents and arrays are compared
    through their canonical extended JSON.
    """
    cls = value.__class__
    if cls is ObjectId:
        return bytes(value.binary)  # 12 bytes: hashed natively, cached (ObjectId hashes in Python)
    if cls in _SCALAR_IDS or (
        isinstance(value, Hashable) and not isinstance(value, Mapping | list)
    ):
        return (cls, value)
    return ("ejson", json_util.dumps(value, json_options=CANONICAL_JSON_OPTIONS))
