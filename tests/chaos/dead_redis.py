"""A stand-in for a Redis that is down, which counts who keeps trying to reach it.

Why it exists: "replicas survive a long Redis outage" is a claim about how many failed
reconnects a subscriber goes through (its backoff must stay capped and never overflow),
and a closed port cannot tell who knocked. :class:`DeadRedis` listens on the stopped
server's port, like a proxy or a cloud endpoint whose Redis behind it is gone: it answers
the connection handshake (``HELLO``, ``CLIENT SETNAME``/``SETINFO``, ``AUTH``, ``SELECT``), so it
learns the client's name, and hangs up at the first real command. Every ``SUBSCRIBE``
is one failed resubscription of that client; :meth:`DeadRedis.subscribes` counts them
per client name (``scc-replica:r-1`` ...). Commands are parsed with hiredis, the RESP
parser redis-py itself uses.
"""

from __future__ import annotations

import socketserver
import threading
from collections import Counter
from typing import Final

import hiredis

#: Handshake commands answered ``+OK`` (all a client sends before its first real command).
_HANDSHAKE: Final = frozenset({"CLIENT", "AUTH", "SELECT"})


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads (0.5 s recv timeout)
    owner: DeadRedis


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, _Server)
        owner = self.server.owner
        reader = hiredis.Reader()
        name = "unnamed"
        self.request.settimeout(0.5)
        while True:
            try:
                data = self.request.recv(65536)
            except TimeoutError:
                if owner.stopping.is_set():
                    return
                continue
            except OSError:
                return
            if not data:
                return
            reader.feed(data)
            while (command := reader.gets()) is not False:
                words = [w.decode("utf-8", "replace") for w in command]
                verb = words[0].upper() if words else ""
                if verb == "HELLO":
                    name = _hello_name(words, name)
                    self.request.sendall(_hello_reply(words))
                    continue
                if verb not in _HANDSHAKE:
                    owner.record(name, verb)
                    return  # hang up: the Redis behind the endpoint is gone
                if verb == "CLIENT" and len(words) > 2 and words[1].upper() == "SETNAME":
                    name = words[2]
                self.request.sendall(b"+OK\r\n")


def _hello_name(words: list[str], name: str) -> str:
    upper = [w.upper() for w in words]
    if "SETNAME" in upper[1:-1]:
        return words[upper.index("SETNAME") + 1]
    return name


def _hello_reply(words: list[str]) -> bytes:
    """What a Redis 7 answers to ``HELLO [2|3] ...`` (RESP3 map or RESP2 flat array)."""
    fields = [
        (b"server", b"$5\r\nredis\r\n"),
        (b"version", b"$5\r\n7.2.0\r\n"),
        (b"proto", b":3\r\n" if words[1:2] == ["3"] else b":2\r\n"),
        (b"id", b":1\r\n"),
        (b"mode", b"$10\r\nstandalone\r\n"),
        (b"role", b"$6\r\nmaster\r\n"),
        (b"modules", b"*0\r\n"),
    ]
    head = b"%7\r\n" if words[1:2] == ["3"] else b"*14\r\n"
    body = b"".join(b"$%d\r\n%s\r\n%s" % (len(k), k, v) for k, v in fields)
    return head + body


class DeadRedis:
    """Listens on ``port`` (thread ``chaos-dead-redis``) until :meth:`stop`."""

    def __init__(self, port: int) -> None:
        self._server = _Server(("127.0.0.1", port), _Handler, bind_and_activate=True)
        self._server.owner = self
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.commands: Counter[tuple[str, str]] = Counter()

    def start(self) -> DeadRedis:
        """Start accepting connections."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="chaos-dead-redis",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, hang up on every open connection, free the port."""
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def record(self, client: str, verb: str) -> None:
        """``client`` sent ``verb`` and was hung up on."""
        with self._lock:
            self.commands[(client, verb)] += 1

    def subscribes(self, client: str) -> int:
        """Failed ``SUBSCRIBE`` attempts of ``client`` so far."""
        with self._lock:
            return self.commands[(client, "SUBSCRIBE")]
