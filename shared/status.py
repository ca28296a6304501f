"""The heartbeat hashes each process writes to Redis, so operators see the fleet there.

``{ns}:watcher:{id}`` and ``{ns}:replica:{id}`` are hashes with a TTL, rewritten on
every heartbeat. Writers (the watcher, the replicas) and the reader (``scc inspect``)
share these dataclasses, so a field is named in one place. Values are stored as strings;
numbers that are unknown are stored as ``""`` and read back as ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar, get_type_hints

_S = TypeVar("_S", bound="_Hash")


def status_ttl_seconds(heartbeat_interval_ms: int) -> int:
    """TTL of a heartbeat hash: it outlives several missed beats, then vanishes."""
    return max(5, (5 * heartbeat_interval_ms + 999) // 1000)


class _Hash:
    def to_hash(self) -> dict[str, str]:
        """Field → string, ready for ``HSET``."""
        out: dict[str, str] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, bool):
                out[f.name] = "1" if value else "0"
            else:
                out[f.name] = "" if value is None else str(value)
        return out

    @classmethod
    def from_hash(cls: type[_S], raw: dict[Any, Any]) -> _S:
        """Parse what ``HGETALL`` returned (bytes or str); unknown fields are ignored."""
        hints = get_type_hints(cls)
        text = {
            (k.decode() if isinstance(k, bytes) else str(k)): (
                v.decode() if isinstance(v, bytes) else str(v)
            )
            for k, v in raw.items()
        }
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in text:
                values[f.name] = _parse(text[f.name], hints[f.name])
        return cls(**values)


def _parse(value: str, hint: Any) -> Any:
    names = str(hint)
    if value == "" and "None" in names:
        return None
    if "bool" in names:
        return value == "1"
    if "int" in names:
        try:
            return int(value)
        except ValueError:
            return None
    if "float" in names:
        try:
            return float(value)
        except ValueError:
            return None
    return value


@dataclass(slots=True)
class WatcherStatus(_Hash):
    """What ``{ns}:watcher:{id}`` holds. Times are unix seconds."""

    instance_id: str = ""
    role: Literal["leader", "standby", "stopping"] | str = "standby"
    epoch: int | None = None
    last_event_at: float | None = None
    last_empty_batch_at: float | None = None
    events_published: int = 0
    resyncs: int = 0
    elections: int = 0
    #: Documents it could not carry in a message (undecodable or unencodable).
    poison_documents: int = 0
    #: The last of them: reason, ``_id`` and error; empty when none.
    last_poison: str = ""
    last_error: str = ""
    last_error_at: float | None = None
    started_at: float | None = None
    updated_at: float | None = None
    version: str = ""


@dataclass(slots=True)
class ReplicaStatus(_Hash):
    """What ``{ns}:replica:{id}`` holds. Times are unix seconds."""

    instance_id: str = ""
    ready: bool = False
    change_stream_active: bool = False
    cache_size: int = 0
    last_seq: int | None = None
    epoch: int | None = None
    warmed_at: float | None = None
    last_message_at: float | None = None
    lag_seconds: float | None = None
    resyncs: int = 0
    started_at: float | None = None
    updated_at: float | None = None
    version: str = ""
