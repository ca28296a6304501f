"""Handshake, server-info and session commands, plus the ``doubleFault`` control command.

``hello`` describes a one-member replica set whose only member is this primary, including
``topologyVersion`` so PyMongo uses the streaming (awaitable) ``hello`` protocol: an
awaitable hello is answered after ``maxAwaitTimeMS`` or as soon as the topology version
changes. The double never sets ``moreToCome`` on replies (allowed by the protocol).
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

from bson import json_util
from bson.binary import Binary
from bson.int64 import Int64
from bson.objectid import ObjectId

from .errors import CommandError, bad_value
from .failpoints import double_fault_rule
from .state import DEFAULT_COLLECTION, DEFAULT_DB, Context, command, validate_db
from .wire import MAX_BSON_SIZE, MAX_MESSAGE_SIZE
from .writes import ELECTION_ID, MAX_WRITE_BATCH


def _now() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@command("hello", "isMaster", "ismaster")
async def hello(ctx: Context) -> dict[str, Any]:
    topology = ctx.state.topology
    max_await = ctx.command.get("maxAwaitTimeMS")
    if "topologyVersion" in ctx.command and max_await is not None:
        if topology.is_current(ctx.command["topologyVersion"]):
            try:
                await asyncio.wait_for(topology.changed().wait(), float(max_await) / 1000)
            except TimeoutError:
                pass
    me = ctx.state.config.address
    last = ctx.store.clock.last
    optime = {"ts": last, "t": Int64(1)}
    reply: dict[str, Any] = {
        "topologyVersion": topology.version(),
        "hosts": [me],
        "setName": ctx.state.config.set_name,
        "setVersion": 1,
    }
    if ctx.name == "hello":
        reply["isWritablePrimary"] = True
    else:
        reply["ismaster"] = True
    reply.update(
        {
            "secondary": False,
            "primary": me,
            "me": me,
            "electionId": ObjectId(ELECTION_ID),
            "lastWrite": {
                "opTime": optime,
                "lastWriteDate": _now(),
                "majorityOpTime": optime,
                "majorityWriteDate": _now(),
            },
            "maxBsonObjectSize": MAX_BSON_SIZE,
            "maxMessageSizeBytes": MAX_MESSAGE_SIZE,
            "maxWriteBatchSize": MAX_WRITE_BATCH,
            "localTime": _now(),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": ctx.conn.id if ctx.conn is not None else 0,
            "minWireVersion": 0,
            "maxWireVersion": 21,
            "readOnly": False,
        }
    )
    if ctx.command.get("helloOk"):
        reply["helloOk"] = True
    reply["ok"] = 1.0
    return reply


@command("ping")
async def ping(ctx: Context) -> dict[str, Any]:
    return {"ok": 1.0}


@command("buildInfo", "buildinfo")
async def build_info(ctx: Context) -> dict[str, Any]:
    return {
        "version": "7.0.0",
        "gitVersion": "mongo-wire-double",
        "modules": [],
        "allocator": "system",
        "javascriptEngine": "none",
        "sysInfo": "deprecated",
        "versionArray": [7, 0, 0, 0],
        "bits": 64,
        "debug": False,
        "maxBsonObjectSize": MAX_BSON_SIZE,
        "storageEngines": ["inMemory"],
        "ok": 1.0,
    }


@command("endSessions", "refreshSessions", "killSessions", "killAllSessions")
async def sessions(ctx: Context) -> dict[str, Any]:
    return {"ok": 1.0}


@command("startSession")
async def start_session(ctx: Context) -> dict[str, Any]:
    return {"id": {"id": Binary(uuid.uuid4().bytes, 4)}, "timeoutMinutes": 30, "ok": 1.0}


@command("connectionStatus")
async def connection_status(ctx: Context) -> dict[str, Any]:
    return {"authInfo": {"authenticatedUsers": [], "authenticatedUserRoles": []}, "ok": 1.0}


@command("whatsmyuri")
async def whats_my_uri(ctx: Context) -> dict[str, Any]:
    return {"you": ctx.conn.peer if ctx.conn is not None else "", "ok": 1.0}


@command("saslStart", "saslContinue", "authenticate", "logout")
async def authenticate(ctx: Context) -> dict[str, Any]:
    raise CommandError(
        18,
        "authentication is not emulated by the MongoDB wire double",
        code_name_="AuthenticationFailed",
    )


@command("doubleFault")
async def double_fault(ctx: Context) -> dict[str, Any]:
    """The control surface for tests; see the package docstring for the verbs."""
    if ctx.db != "admin":
        raise CommandError(13, "doubleFault may only be run against the admin database")
    verb = ctx.arg("doubleFault", str)
    action = _VERBS.get(verb)
    if action is None:
        raise bad_value(f"unknown doubleFault verb {verb!r}; known: {sorted(_VERBS)}")
    reply = action(ctx)
    reply["ok"] = 1.0
    return reply


def _hangup(ctx: Context) -> dict[str, Any]:
    include_self = bool(ctx.command.get("includeSelf", False))
    closed = ctx.state.hangup(None if include_self else ctx.conn)
    return {"closed": closed}


def _fail_commands(ctx: Context) -> dict[str, Any]:
    names = ctx.arg("commands", list)
    if not names or not all(isinstance(n, str) for n in names):
        raise bad_value("failCommands needs 'commands': a non-empty array of command names")
    labels = ctx.arg("errorLabels", list, None)
    if ctx.arg("times", (int, float), 1) < 1:
        raise bad_value("failCommands 'times' must be >= 1")
    rule = double_fault_rule(
        [str(n) for n in names],
        times=int(ctx.arg("times", (int, float), 1)),
        code=int(ctx.arg("code", (int, float), 10107)),
        code_name=ctx.arg("codeName", str, None),
        errmsg=ctx.arg("errmsg", str, None),
        labels=None if labels is None else [str(label) for label in labels],
        close_connection=bool(ctx.arg("closeConnection", bool, False)),
    )
    ctx.state.faults.points.rules.append(rule)
    return {}


def _forget_history(ctx: Context) -> dict[str, Any]:
    ctx.store.forget_history()
    return {"floor": ctx.store.floor.token(ctx.store.deployment)}


def _history_limit(ctx: Context) -> dict[str, Any]:
    entries = ctx.arg("entries", (int, type(None)), None)
    if entries is not None and entries < 0:
        raise bad_value("historyLimit 'entries' must be >= 0 or null")
    ctx.store.set_history_limit(entries)
    return {"floor": ctx.store.floor.token(ctx.store.deployment)}


def _latency(ctx: Context) -> dict[str, Any]:
    ms = ctx.arg("ms", (int, float))
    if ms < 0:
        raise bad_value("latency 'ms' must be >= 0")
    ctx.state.faults.latency_ms = float(ms)
    return {}


def _command_counts(ctx: Context) -> dict[str, Any]:
    counts = dict(ctx.state.faults.counts)
    if ctx.command.get("reset"):
        ctx.state.faults.counts.clear()
    return {"counts": counts}


def _reset_counts(ctx: Context) -> dict[str, Any]:
    ctx.state.faults.counts.clear()
    return {}


def _seed(ctx: Context) -> dict[str, Any]:
    db = validate_db(ctx.arg("db", str, DEFAULT_DB))
    name = ctx.arg("collection", str, DEFAULT_COLLECTION)
    docs = ctx.arg("documents", list, None)
    if docs is None:
        docs = json_util.loads(ctx.arg("json", str))
    inserted = 0
    for doc in docs:
        ctx.store.insert(db, name, doc)
        inserted += 1
    return {"inserted": inserted}


def _clear(ctx: Context) -> dict[str, Any]:
    ctx.state.faults.clear()
    ctx.store.set_history_limit(None)
    return {}


def _status(ctx: Context) -> dict[str, Any]:
    faults = ctx.state.faults
    return {
        "rules": [
            {
                "commands": sorted(r.data["failCommands"]),
                "remaining": int(r.value),
                "code": r.data["errorCode"],
            }
            for r in faults.points.rules
        ],
        "latencyMS": faults.latency_ms,
        "historyEntries": len(ctx.store.history),
        "historyLimit": ctx.store.history_limit,
        "floor": ctx.store.floor.token(ctx.store.deployment),
        "connections": len(ctx.state.connections),
        "openCursors": len(ctx.state.cursors),
    }


_VERBS = {
    "hangup": _hangup,
    "failCommands": _fail_commands,
    "forgetHistory": _forget_history,
    "historyLimit": _history_limit,
    "latency": _latency,
    "commandCounts": _command_counts,
    "resetCommandCounts": _reset_counts,
    "seed": _seed,
    "clear": _clear,
    "status": _status,
}
