"""The asyncio TCP server: connections, command dispatch, fault injection, reply framing.

One task per connection reads a message, runs the command, writes the reply, in order
(MongoDB also runs one operation at a time per connection). Any exception inside a command
becomes an error reply; only broken framing closes the connection. Every reply gets
``$clusterTime`` and ``operationTime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from bson.binary import Binary
from bson.int64 import Int64

from . import admin, ddl, diagnostics, reads, writes  # noqa: F401 - importing registers the handlers
from .errors import WRITE_COMMANDS, CommandError, not_emulated, server_labels
from .failpoints import FailPoint
from .injecting import injected_error
from .state import HANDLERS, Context, DoubleConfig, State, validate_db
from .values import canon
from .wire import (
    OP_QUERY,
    ProtocolError,
    Request,
    encode_document,
    encode_op_msg,
    encode_op_reply,
    read_request,
)

log = logging.getLogger(__name__)

_LEGACY_COMMANDS = {"hello", "isMaster", "ismaster"}
_UNCOUNTED = {"doubleFault"}
_SIGNATURE = {"hash": Binary(bytes(20), 0), "keyId": Int64(0)}


class _HangUp(Exception):
    """Close this connection without replying (an injected ``closeConnection`` fault)."""


@dataclass(slots=True, eq=False)
class Connection:
    """One client connection."""

    id: int
    peer: str
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None
    app_name: str | None = None  # client.application.name from the handshake

    def note_handshake(self, cmd: dict[str, Any]) -> None:
        """Remember the application name a driver sends in its first hello."""
        client = cmd.get("client")
        if self.app_name is None and isinstance(client, dict):
            app = client.get("application")
            if isinstance(app, dict) and isinstance(app.get("name"), str):
                self.app_name = app["name"]

    def abort(self) -> None:
        self.writer.transport.abort()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


class DoubleServer:
    """A MongoDB wire double bound to the running event loop."""

    def __init__(self, config: DoubleConfig | None = None) -> None:
        self.config = config or DoubleConfig()
        self.state = State(self.config)
        self.state.hangup = self.hangup
        self._server: asyncio.Server | None = None
        self._noop: asyncio.Task[None] | None = None
        self._next_request_id = 1

    @property
    def uri(self) -> str:
        return f"mongodb://{self.config.address}/?directConnection=true"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.config.host, self.config.port)
        self.config.port = self._server.sockets[0].getsockname()[1]
        self._noop = asyncio.create_task(self._noop_writer(), name="mongo-double-noop")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._noop is not None:
            self._noop.cancel()
        tasks = [c.task for c in self.state.connections.values() if c.task is not None]
        self.hangup(None)
        for task in [*tasks, self._noop]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def hangup(self, keep: Connection | None) -> int:
        """Abort every client connection except ``keep``; return how many were closed."""
        victims = [c for c in self.state.connections.values() if c is not keep]
        for conn in victims:
            self.state.connections.pop(conn.id, None)
            conn.abort()
        return len(victims)

    async def _noop_writer(self) -> None:
        while True:
            await asyncio.sleep(self.config.noop_interval)
            self.state.store.noop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        conn = Connection(
            self.state.next_connection_id,
            f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
            writer,
            asyncio.current_task(),
        )
        self.state.next_connection_id += 1
        self.state.connections[conn.id] = conn
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    break
                reply = await self._execute(conn, request)
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
        except _HangUp:
            writer.transport.abort()
        except (ProtocolError, ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("connection %s closed: %s", conn.id, exc)
        except asyncio.CancelledError:
            pass  # hung up by a fault hook or by close(); this task owns nothing else
        except Exception:  # never let one connection's failure reach the event loop
            log.exception("connection %s failed", conn.id)
        finally:
            self.state.connections.pop(conn.id, None)
            writer.close()

    async def _execute(self, conn: Connection, request: Request) -> bytes | None:
        name = request.name
        try:
            body = await self._run(conn, request)
        except _HangUp:
            raise
        except CommandError as exc:
            body = exc.to_document()
        except Exception as exc:  # a bug or an unforeseen input must not kill the server
            log.exception("command %r failed inside the double", name)
            body = CommandError(1, f"mongo wire double internal error: {exc!r}").to_document()
        clock = self.state.store.clock.last
        body["$clusterTime"] = {"clusterTime": clock, "signature": _SIGNATURE}
        body["operationTime"] = clock
        if self.state.faults.latency_ms and name not in _UNCOUNTED:
            await asyncio.sleep(self.state.faults.latency_ms / 1000)
        if request.more_to_come:
            return None
        request_id = self._next_request_id
        self._next_request_id += 1
        encoded = encode_document(body)
        if request.op_code == OP_QUERY:
            return encode_op_reply(request_id, request.request_id, encoded, failed=False)
        return encode_op_msg(request_id, request.request_id, encoded)

    async def _run(self, conn: Connection, request: Request) -> dict[str, Any]:
        if request.error is not None:
            raise CommandError(9, request.error)
        cmd, name = request.command, request.name
        if not name:
            raise CommandError(9, "empty command document")
        if name not in _UNCOUNTED:
            self.state.faults.counts[name] += 1
        if request.op_code == OP_QUERY and name not in _LEGACY_COMMANDS:
            raise CommandError(
                5739101,
                f"Unsupported OP_QUERY command: {name}. The client driver may require an upgrade.",
            )
        db = validate_db(request.legacy_db if request.op_code == OP_QUERY else cmd.get("$db"))
        _refuse_unemulated(name, cmd)
        handler = HANDLERS.get(name)
        if handler is None:
            raise CommandError(59, f"no such command: '{name}'")
        if name == "hello" or name.lower() == "ismaster":
            conn.note_handshake(cmd)
        concern_error = await self._fail_points(conn, name, cmd, db)
        retry_key = _retry_key(name, cmd)
        if retry_key is not None:
            done = self.state.retried_writes.get(retry_key[0])
            if done is not None and done[0] == retry_key[1]:
                return dict(done[1])
        reply = await handler(Context(self.state, conn, db, name, cmd))
        if retry_key is not None:
            self.state.retried_writes[retry_key[0]] = (retry_key[1], dict(reply))
        if concern_error is not None:
            reply = _with_write_concern_error(reply, concern_error, name, cmd)
        return reply

    async def _fail_points(
        self, conn: Connection, name: str, cmd: dict[str, Any], db: str
    ) -> FailPoint | None:
        """Fire the fail points due before ``name`` runs; the one owing a writeConcernError."""
        ns = _namespace(db, name, cmd)
        for point in self.state.faults.points.before_command(name, conn.app_name, ns):
            data = point.data
            if data.get("blockConnection"):
                block = data.get("blockTimeMS")
                if not isinstance(block, int | float) or isinstance(block, bool) or block < 0:
                    raise CommandError(
                        72, "must specify 'blockTimeMS' when 'blockConnection' is true"
                    )
                await asyncio.sleep(block / 1000)
            if data.get("closeConnection"):
                raise _HangUp()
            if "errorCode" in data:
                raise injected_error(self.state, point, name, cmd)
            if "writeConcernError" in data:
                return point
        return None


def _namespace(db: str, name: str, cmd: dict[str, Any]) -> str:
    """The namespace a command works on, as failCommand's ``namespace`` compares it."""
    target = cmd.get("collection") if name == "getMore" else cmd.get(name)
    return f"{db}.{target}" if isinstance(target, str) else db


def _with_write_concern_error(
    reply: dict[str, Any], point: FailPoint, name: str, cmd: dict[str, Any]
) -> dict[str, Any]:
    """The reply of a command that ran, plus the fail point's ``writeConcernError``."""
    if reply.get("ok") != 1.0:
        return reply
    error = dict(point.data["writeConcernError"])
    labels = error.pop("errorLabels", None)
    if isinstance(point.data.get("errorLabels"), list):
        labels = point.data["errorLabels"]
    if labels is None and isinstance(error.get("code"), int):
        labels = server_labels(int(error["code"]), name, cmd, False)
    reply = {**reply, "writeConcernError": error}
    if labels:
        reply["errorLabels"] = list(labels)
    return reply


def _refuse_unemulated(name: str, cmd: dict[str, Any]) -> None:
    """Transactions and collation are refused up front, whatever the command."""
    if (
        cmd.get("startTransaction")
        or "autocommit" in cmd
        or name in {"commitTransaction", "abortTransaction"}
    ):
        raise CommandError(20, "transactions are not supported by the MongoDB wire double")
    if _uses_collation(cmd):
        raise not_emulated("collation")


def _uses_collation(cmd: dict[str, Any]) -> bool:
    if cmd.get("collation"):
        return True
    statements = cmd.get("updates") or cmd.get("deletes")
    return isinstance(statements, list) and any(
        isinstance(s, dict) and s.get("collation") for s in statements
    )


def _retry_key(name: str, cmd: dict[str, Any]) -> tuple[Any, int] | None:
    """(session, txnNumber) of a retryable write, whose result a retry must get back."""
    lsid = cmd.get("lsid")
    txn = cmd.get("txnNumber")
    if name not in WRITE_COMMANDS or not isinstance(lsid, dict) or not isinstance(txn, int):
        return None
    return canon(lsid.get("id")), int(txn)
