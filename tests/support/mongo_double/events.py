"""Change events: how one history entry looks to one change stream.

Why apart from stream handling: which entries a stream sees (its namespace; DDL entries only
with ``showExpandedEvents``) and the event shape a 7.0 primary sends (``_id`` resume token,
``operationType``, ``clusterTime``, ``wallTime``, ``ns``, ``documentKey``, ``fullDocument``,
``updateDescription``, ``to``; ``collectionUUID`` and ``operationDescription`` when
expanded; ``invalidate`` after a drop or rename of the watched collection) are decided here
and nowhere else. ``updateLookup`` reads the document's state when the event is rendered
(null once deleted), as the server does.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from bson.timestamp import Timestamp

from .collection import StoredDoc
from .errors import CommandError
from .store import Entry, Store
from .tokens import RANK_INVALIDATE, RANK_START, Position

INTERNAL_DBS = {"admin", "config", "local"}
# Entries only a stream opened with showExpandedEvents reports.
EXPANDED_OPS = frozenset({"create", "createIndexes", "dropIndexes", "modify"})


@dataclass(slots=True)
class StreamCursor:
    """An open change stream: what it watches, how it renders, and where it stands."""

    id: int
    ns: str
    db: str
    coll: str | None  # None: a whole database (or the cluster when all_dbs)
    all_dbs: bool
    update_lookup: bool
    post_images: str = "default"  # fullDocument: default | updateLookup | whenAvailable | required
    pre_images: str = "off"  # fullDocumentBeforeChange: off | whenAvailable | required
    expanded: bool = False  # showExpandedEvents: DDL events, collectionUUID, operationDescription
    stages: list[tuple[str, Any]] = field(default_factory=list)  # ($match|$project, spec)
    position: Position = Position(0, 0, RANK_START)


def _covers(cursor: StreamCursor, entry: Entry) -> bool:
    if cursor.all_dbs:
        return entry.db not in INTERNAL_DBS
    if entry.db != cursor.db:
        return False
    if cursor.coll is None:
        return entry.coll is None or not entry.coll.startswith("system.")
    return cursor.coll in (entry.coll, entry.to)


def render(
    store: Store, cursor: StreamCursor, entry: Entry
) -> list[tuple[Position, dict[str, Any]]]:
    if not _covers(cursor, entry) or (entry.op in EXPANDED_OPS and not cursor.expanded):
        return []
    if entry.op == "dropDatabase" and cursor.coll is not None:
        return []  # the collection's own drop entry already invalidated this stream
    event = _base(entry.pos, entry.op, entry, store.deployment)
    _documents(store, cursor, entry, event)
    event["ns"] = {"db": entry.db} if entry.coll is None else {"db": entry.db, "coll": entry.coll}
    if entry.key is not None:
        event["documentKey"] = entry.key
    if entry.description is not None:
        event["updateDescription"] = _description(entry.description, cursor.expanded)
    if entry.to is not None:
        event["to"] = {"db": entry.db, "coll": entry.to}
    if cursor.expanded:
        if entry.uuid is not None:
            event["collectionUUID"] = entry.uuid
        if entry.info is not None:
            event["operationDescription"] = entry.info
    rendered = [(entry.pos, event)]
    invalidates = (entry.op in ("drop", "rename") and cursor.coll is not None) or (
        entry.op == "dropDatabase" and cursor.coll is None and not cursor.all_dbs
    )
    if invalidates:
        pos = Position(entry.pos.time, entry.pos.inc, RANK_INVALIDATE)
        rendered.append((pos, _base(pos, "invalidate", entry, store.deployment)))
    return rendered


def _documents(store: Store, cursor: StreamCursor, entry: Entry, event: dict[str, Any]) -> None:
    """``fullDocument`` and ``fullDocumentBeforeChange`` as the stream's modes ask."""
    if entry.op in {"insert", "replace"}:
        assert entry.full is not None
        event["fullDocument"] = entry.full.doc
    elif entry.op == "update" and cursor.update_lookup:
        assert entry.key is not None and entry.coll is not None
        current = store.lookup_id(entry.db, entry.coll, entry.key["_id"])
        event["fullDocument"] = None if current is None else current.doc
    elif entry.op == "update" and cursor.post_images != "default":
        event["fullDocument"] = _image(entry.post, cursor.post_images, "post", entry)
    if cursor.pre_images != "off" and entry.op in {"update", "replace", "delete"}:
        event["fullDocumentBeforeChange"] = _image(entry.pre, cursor.pre_images, "pre", entry)


def _image(image: StoredDoc | None, mode: str, kind: str, entry: Entry) -> Any:
    """A recorded pre-/post-image, null when absent, or the server's error when required."""
    if image is not None:
        return image.doc
    if mode == "required":
        raise CommandError(
            47,
            f"Change stream was configured to require a {kind}-image for all update, delete and "
            f"replace events, but the {kind}-image was not found for the event on "
            f"{entry.db}.{entry.coll} at {entry.pos.time},{entry.pos.inc}",
        )
    return None


def _description(description: dict[str, Any], expanded: bool) -> dict[str, Any]:
    """``disambiguatedPaths`` only on expanded streams, and only when a path is ambiguous."""
    paths = description.get("disambiguatedPaths")
    if expanded and paths:
        return description
    return {k: v for k, v in description.items() if k != "disambiguatedPaths"}


def _base(pos: Position, op: str, entry: Entry, deployment: str) -> dict[str, Any]:
    return {
        "_id": pos.token(deployment),
        "operationType": op,
        "clusterTime": Timestamp(pos.time, pos.inc),
        "wallTime": datetime.datetime(1970, 1, 1)
        + datetime.timedelta(milliseconds=int(entry.wall * 1000)),
    }
