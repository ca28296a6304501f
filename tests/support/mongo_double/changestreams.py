"""Change streams over the double's history: opening, resuming, batching, shaping events.

A stream cursor is a position in the history plus its own stages (``$match``, ``$project``).
Each batch renders the entries after that position (:mod:`.events`), runs the stages, and
reports a ``postBatchResumeToken``: the last returned event's token when it is the newest
entry, otherwise a high-water mark past everything scanned, so resuming from it neither
repeats nor misses an event.
"""

from __future__ import annotations

from typing import Any

import bson
from bson.timestamp import Timestamp

from .errors import CommandError, bad_value, unknown_stage
from .events import INTERNAL_DBS, StreamCursor, render
from .projecting import aggregate_project
from .store import Store
from .tokens import RANK_EVENT, RANK_INVALIDATE, RANK_START, Position, parse_token
from .values import MISSING, check_query, matches
from .wire import CODEC, MAX_BSON_SIZE

__all__ = ["StreamCursor", "history_lost", "is_change_stream", "next_batch", "open_stream"]

_OPTIONS = {
    "fullDocument",
    "fullDocumentBeforeChange",
    "resumeAfter",
    "startAfter",
    "startAtOperationTime",
    "allChangesForCluster",
    "showExpandedEvents",
}


def history_lost() -> CommandError:
    """The error for a position older than the retained history (code 286)."""
    return CommandError(
        286,
        "Resume of change stream was not possible, as the resume point may no longer be in the "
        "oplog.",
    )


def is_change_stream(pipeline: Any) -> bool:
    return (
        isinstance(pipeline, list)
        and bool(pipeline)
        and isinstance(pipeline[0], dict)
        and "$changeStream" in pipeline[0]
    )


def open_stream(store: Store, db: str, target: Any, pipeline: list[Any]) -> StreamCursor:
    """Validate a ``$changeStream`` pipeline and create its (unregistered, id 0) cursor."""
    options = pipeline[0]["$changeStream"]
    if len(pipeline[0]) != 1 or not isinstance(options, dict):
        raise CommandError(
            40573, "the $changeStream stage must be an object and alone in its stage"
        )
    for key in options:
        if key not in _OPTIONS:
            raise CommandError(40415, f"BSON field '$changeStream.{key}' is an unknown field.")
    coll, all_dbs = _target(db, target, bool(options.get("allChangesForCluster", False)))
    full = options.get("fullDocument", "default")
    if full not in {"default", "updateLookup", "whenAvailable", "required"}:
        raise bad_value(f"unknown fullDocument mode: {full!r}")
    before = options.get("fullDocumentBeforeChange", "off")
    if before not in {"off", "whenAvailable", "required"}:
        raise bad_value(f"unknown fullDocumentBeforeChange mode: {before!r}")
    expanded = options.get("showExpandedEvents", False)
    if not isinstance(expanded, bool):
        raise CommandError(14, "$changeStream.showExpandedEvents must be a boolean")
    cursor = StreamCursor(
        id=0,
        ns=f"{db}.{coll}" if coll is not None else f"{db}.$cmd.aggregate",
        db=db,
        coll=coll,
        all_dbs=all_dbs,
        update_lookup=full == "updateLookup",
        post_images=full,
        pre_images=before,
        expanded=expanded,
        stages=_stages(pipeline[1:]),
    )
    cursor.position = _start_position(store, options)
    return cursor


def _target(db: str, target: Any, all_dbs: bool) -> tuple[str | None, bool]:
    if all_dbs:
        if db != "admin" or target != 1:
            raise CommandError(
                73,
                "A $changeStream with 'allChangesForCluster:true' may only be opened on the "
                "'admin' database, and with no collection name",
            )
        return None, True
    if db in INTERNAL_DBS:
        raise CommandError(73, f"$changeStream may not be opened on the internal {db} database")
    if target == 1:
        return None, False
    if not isinstance(target, str) or not target or target.startswith("system."):
        raise CommandError(73, f"$changeStream may not be opened on the namespace {db}.{target}")
    return target, False


def _stages(stages: list[Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for stage in stages:
        if not isinstance(stage, dict) or len(stage) != 1:
            raise CommandError(
                40323, "A pipeline stage specification object must contain exactly one field."
            )
        ((name, spec),) = stage.items()
        if name == "$changeStream":
            raise CommandError(
                40602, "$changeStream is only valid as the first stage in a pipeline."
            )
        if name == "$match":
            if not isinstance(spec, dict):
                raise CommandError(15959, "the match filter must be an expression in an object")
            check_query(spec)
        elif name == "$project":
            aggregate_project({}, spec)  # refuse a bad specification when the stream opens
        else:
            raise unknown_stage(name, "after $changeStream (only $match and $project are)")
        out.append((name, spec))
    return out


def _shape(cursor: StreamCursor, event: dict[str, Any]) -> dict[str, Any] | None:
    """Run the stream's own stages on one event; None when a $match drops it.

    An event whose ``_id`` (its resume token) a stage removed or changed fails the stream
    with 280 when it is returned, as on the server.
    """
    token = event["_id"]
    for name, spec in cursor.stages:
        if name == "$match":
            if not matches(event, spec):
                return None
        else:
            event = aggregate_project(event, spec)
    if event.get("_id", MISSING) != token:
        raise _token_modified()
    return event


def _token_modified() -> CommandError:
    return CommandError(
        280,
        "Encountered an event whose _id field, which contains the resume token, was modified "
        "by the pipeline. Modifying the _id field of an event makes it impossible to resume "
        "the stream from that point. Only transformations that retain the unmodified _id "
        "field are allowed.",
    )


def _start_position(store: Store, options: dict[str, Any]) -> Position:
    given = [k for k in ("resumeAfter", "startAfter", "startAtOperationTime") if k in options]
    if "resumeAfter" in given and "startAfter" in given:
        raise CommandError(
            50865, "Do not specify both 'startAfter' and 'resumeAfter' in a $changeStream stage."
        )
    if len(given) > 1:
        raise CommandError(
            40674, "Only one type of resume option is allowed, but multiple were found."
        )
    if not given:
        return store.clock.high_water_mark()
    option = given[0]
    if option == "startAtOperationTime":
        ts = options[option]
        if not isinstance(ts, Timestamp):
            raise CommandError(14, "$changeStream.startAtOperationTime must be a timestamp")
        pos = Position.at(ts, RANK_START)
    else:
        pos, deployment = parse_token(options[option], option)
        if pos >= store.floor and deployment != store.deployment:
            raise CommandError(
                280, "cannot resume stream; the resume token was not found (another deployment)"
            )
        if option == "resumeAfter" and pos.rank == RANK_INVALIDATE:
            raise CommandError(
                260,
                "Attempting to resume a change stream using 'resumeAfter' is not allowed from an "
                "invalidate notification.",
            )
    if pos < store.floor:
        raise history_lost()
    if (
        pos.rank in (RANK_EVENT, RANK_INVALIDATE)
        and (pos.time, pos.inc) <= (store.clock.last.time, store.clock.last.inc)
        and not store.has_entry_at(pos)
    ):
        raise CommandError(280, "cannot resume stream; the resume token was not found.")
    return pos


def next_batch(store: Store, cursor: StreamCursor, limit: int | None) -> tuple[list[bytes], bool]:
    """Collect the next events (encoded); True when the stream was invalidated (closed)."""
    if cursor.position < store.floor:
        raise history_lost()
    if limit == 0:
        return [], False
    out: list[bytes] = []
    size = 0
    position = cursor.position
    returned: Position | None = None
    exhausted = True
    for entry in store.entries_from(position):
        stop = False
        for pos, event in render(store, cursor, entry):
            if pos <= position:
                continue
            if event["operationType"] == "invalidate":
                out.append(bson.encode(event, codec_options=CODEC))
                cursor.position = pos
                return out, True
            shaped = _shape(cursor, event)
            if shaped is None:
                position = pos
                continue
            event = shaped
            raw = bson.encode(event, codec_options=CODEC)
            if out and size + len(raw) > MAX_BSON_SIZE:
                stop = True
                break
            out.append(raw)
            size += len(raw)
            position = returned = pos
            if limit is not None and len(out) >= limit:
                stop = True
                break
        if stop:
            exhausted = False
            break
    newest = (
        returned is not None
        and returned == position
        and (position.time, position.inc)
        == (
            store.clock.last.time,
            store.clock.last.inc,
        )
    )
    if exhausted and not newest:
        position = max(position, store.clock.high_water_mark())
    cursor.position = position
    return out, False
