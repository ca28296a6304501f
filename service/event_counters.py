"""The counts of what ``POST /events/blob`` did, as plain integers for metric callbacks.

Why a module of its own: the counters are written by the HTTP layer, the router and the
Redis sink, and read by :mod:`service.metrics`; none of those needs the others to count.
Re-exported by :mod:`service.event_sinks`.
"""

from __future__ import annotations

from typing import Final

from service.event_schemas import DEAD_LETTER_REASONS

OUTCOMES: Final = ("accepted", "dead_lettered", "validation")
REJECTION_REASONS: Final = (
    "unauthorized",
    "too_large",
    "too_many_events",
    "incomplete_body",
    "body_timeout",
    "unsupported_media_type",
    "bad_json",
    "bad_schema",
    "over_limit",
    "unavailable",
    "config_unavailable",
    "not_replicated",
)
STREAMS: Final = ("accepted", "dlq")


class TrimCounters:
    """What trimming removed from each stream, and the length it left (plain integers)."""

    __slots__ = ("length", "removed", "removed_unread")

    def __init__(self) -> None:
        self.removed: dict[str, int] = dict.fromkeys(STREAMS, 0)
        self.removed_unread: dict[str, int] = dict.fromkeys(STREAMS, 0)
        self.length: dict[str, int] = dict.fromkeys(STREAMS, 0)


class IngestCounters:
    """Plain-integer counts of what ``POST /events/blob`` did, read by metric callbacks.

    The label sets are fixed at construction (so a callback iterating them on another
    thread never sees a dict change size): ``outcomes`` per event (``accepted``,
    ``dead_lettered``, ``validation``), ``rejections`` per refused request,
    ``dead_letters`` per dead-letter reason.
    """

    __slots__ = ("dead_letters", "duplicates", "outcomes", "rejections", "trims")

    def __init__(self) -> None:
        self.trims = TrimCounters()
        #: Events answered from the de-duplication window instead of being stored again.
        self.duplicates = 0
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.rejections: dict[str, int] = dict.fromkeys(REJECTION_REASONS, 0)
        self.dead_letters: dict[str, int] = dict.fromkeys(DEAD_LETTER_REASONS, 0)

    def events_by_outcome(self) -> list[tuple[float, dict[str, str]]]:
        """``[(count, {"outcome": o})]`` for ``scc_events_total``."""
        return [(n, {"outcome": k}) for k, n in list(self.outcomes.items())]

    def rejections_by_reason(self) -> list[tuple[float, dict[str, str]]]:
        """``[(count, {"reason": r})]`` for ``scc_events_rejected_total``."""
        return [(n, {"reason": k}) for k, n in list(self.rejections.items())]

    def dead_letters_by_reason(self) -> list[tuple[float, dict[str, str]]]:
        """``[(count, {"reason": r})]`` for ``scc_events_dead_lettered_total``."""
        return [(n, {"reason": k}) for k, n in list(self.dead_letters.items())]

    def trimmed_by_stream(self) -> list[tuple[float, dict[str, str]]]:
        """``[(count, {"stream": s})]`` for ``scc_events_trimmed_total``."""
        return [(n, {"stream": k}) for k, n in list(self.trims.removed.items())]

    def trimmed_unread_by_stream(self) -> list[tuple[float, dict[str, str]]]:
        """``[(count, {"stream": s})]`` for ``scc_events_trimmed_unread_total``."""
        return [(n, {"stream": k}) for k, n in list(self.trims.removed_unread.items())]

    def length_by_stream(self) -> list[tuple[float, dict[str, str]]]:
        """``[(entries, {"stream": s})]`` for ``scc_events_stream_length`` (last write)."""
        return [(n, {"stream": k}) for k, n in list(self.trims.length.items())]
