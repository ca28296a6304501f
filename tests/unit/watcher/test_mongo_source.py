"""Classification of PyMongo errors: dead tokens resync, everything else is retried."""

from __future__ import annotations

import pytest
from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure, PyMongoError

from watcher.errors import HistoryLost, SourceUnavailable
from watcher.mongo_source import classify, pipeline


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        (286, "Resume of change stream was not possible", "history_lost"),
        (260, "cannot resume stream; the resume token was not found", "invalid_token"),
        (280, "cannot resume stream", "token_refused"),
        (9, "startAfter: a resume token needs a string '_data' field", "token_refused"),
    ],
)
def test_errors_about_the_token_become_history_lost(code: int, message: str, reason: str) -> None:
    """Server errors that mean "this token will never work" map to HistoryLost(reason)."""
    error = classify(OperationFailure(message, code=code))
    assert isinstance(error, HistoryLost) and error.reason == reason


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("connection closed"),
        NetworkTimeout("timed out"),
        OperationFailure("not primary", code=10107),
        OperationFailure("unauthorized", code=13),
    ],
)
def test_other_errors_are_retryable_source_failures(error: PyMongoError) -> None:
    """Network errors, step-downs and other refusals are SourceUnavailable (backoff, retry)."""
    assert isinstance(classify(error), SourceUnavailable)


def test_the_pipeline_passes_exactly_the_operations_the_watcher_acts_on() -> None:
    """The ``$match`` lets through the four document ops and the four stream-ending ones."""
    [stage] = pipeline()
    assert set(stage["$match"]["operationType"]["$in"]) == {
        "insert",
        "update",
        "replace",
        "delete",
        "drop",
        "rename",
        "dropDatabase",
        "invalidate",
    }


def test_a_stream_without_the_buffer_view_reads_as_holding_nothing() -> None:
    """A PyMongo without ``_cursor._has_next`` makes the watcher publish unbatched, warned once."""
    from structlog.testing import capture_logs

    import watcher.mongo_source as mongo_source

    mongo_source._warned_no_buffer_view = False
    with capture_logs() as logs:
        assert mongo_source.holds_next(object()) is False  # type: ignore[arg-type]
        assert mongo_source.holds_next(object()) is False  # type: ignore[arg-type]
    assert [e["log_level"] for e in logs] == ["warning"]
    assert "unbatched" in logs[0]["event"]
