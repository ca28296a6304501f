"""Server error documents, code names and the error labels a 7.0 primary attaches.

Every failure the double reports goes through :class:`CommandError`, so the reply always has
the server's shape: ``{ok: 0, errmsg, code, codeName[, errorLabels]}``. The label rules live
here, in one place, because the driver decides resumability and write retries from them.
"""

from __future__ import annotations

from typing import Any

CODE_NAMES: dict[int, str] = {
    1: "InternalError",
    2: "BadValue",
    6: "HostUnreachable",
    7: "HostNotFound",
    9: "FailedToParse",
    13: "Unauthorized",
    14: "TypeMismatch",
    15: "Overflow",
    20: "IllegalOperation",
    22: "InvalidBSON",
    26: "NamespaceNotFound",
    28: "PathNotViable",
    40: "ConflictingUpdateOperators",
    43: "CursorNotFound",
    47: "NoMatchingDocument",
    48: "NamespaceExists",
    50: "MaxTimeMSExpired",
    59: "CommandNotFound",
    63: "StaleShardVersion",
    66: "ImmutableField",
    72: "InvalidOptions",
    73: "InvalidNamespace",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    89: "NetworkTimeout",
    91: "ShutdownInProgress",
    133: "FailedToSatisfyReadPreference",
    150: "StaleEpoch",
    189: "PrimarySteppedDown",
    234: "RetryChangeStream",
    260: "InvalidResumeToken",
    262: "ExceededTimeLimit",
    280: "ChangeStreamFatalError",
    286: "ChangeStreamHistoryLost",
    9001: "SocketException",
    10107: "NotWritablePrimary",
    11000: "DuplicateKey",
    11600: "InterruptedAtShutdown",
    11602: "InterruptedDueToReplStateChange",
    13388: "StaleConfig",
    13435: "NotPrimaryNoSecondaryOk",
    13436: "NotPrimaryOrSecondary",
}

# Codes a 4.4+ server labels ResumableChangeStreamError on change-stream aggregate/getMore.
RESUMABLE_CHANGE_STREAM_CODES = frozenset(
    {6, 7, 63, 89, 91, 133, 150, 189, 234, 262, 9001, 10107, 11600, 11602, 13388, 13435, 13436}
)
# Codes the server labels RetryableWriteError on a retryable write (a write with txnNumber).
RETRYABLE_WRITE_CODES = frozenset({6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
# "Not writable primary" / "node is recovering" codes: a real primary only returns these after a
# state change, which also bumps its topologyVersion.
STATE_CHANGE_CODES = frozenset({91, 189, 10107, 11600, 11602, 13435, 13436})

# Codes in the server's NonResumableChangeStreamError category (labelled on every reply).
NON_RESUMABLE_CHANGE_STREAM_CODES = frozenset({280, 286})

WRITE_COMMANDS = frozenset({"insert", "update", "delete", "findAndModify", "findandmodify"})


def code_name(code: int) -> str:
    """Return the server's codeName for ``code`` (``Location<code>`` when it has none)."""
    return CODE_NAMES.get(code, f"Location{code}")


class CommandError(Exception):
    """A command failed; rendered as the server's error reply document."""

    def __init__(
        self,
        code: int,
        errmsg: str,
        *,
        code_name_: str | None = None,
        labels: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.code_name = code_name_ or code_name(code)
        self.labels = labels
        self.extra = extra or {}

    def to_document(self) -> dict[str, Any]:
        """The reply body, without ``$clusterTime``/``operationTime``."""
        doc: dict[str, Any] = {
            "ok": 0.0,
            "errmsg": self.errmsg,
            "code": self.code,
            "codeName": self.code_name,
        }
        doc.update(self.extra)
        labels = self.labels
        if labels is None and self.code in NON_RESUMABLE_CHANGE_STREAM_CODES:
            labels = ["NonResumableChangeStreamError"]
        if labels:
            doc["errorLabels"] = list(labels)
        return doc


def server_labels(
    code: int, command_name: str, command: dict[str, Any], is_stream: bool
) -> list[str]:
    """The labels a 7.0 primary attaches to an error ``code`` for this command."""
    labels: list[str] = []
    if code in NON_RESUMABLE_CHANGE_STREAM_CODES:
        labels.append("NonResumableChangeStreamError")
    if is_stream and command_name in {"aggregate", "getMore"}:
        if code in RESUMABLE_CHANGE_STREAM_CODES or (code == 43 and command_name == "getMore"):
            labels.append("ResumableChangeStreamError")
    if (
        command_name in WRITE_COMMANDS
        and "txnNumber" in command
        and "autocommit" not in command
        and code in RETRYABLE_WRITE_CODES
    ):
        labels.append("RetryableWriteError")
    return labels


def bad_value(message: str) -> CommandError:
    """A BadValue (code 2) error, the server's answer to most malformed arguments."""
    return CommandError(2, message)


# Aggregation stages a 7.0 server knows; any other name is "unrecognized" (40324) there too.
KNOWN_STAGES = frozenset(
    {
        "$addFields",
        "$bucket",
        "$bucketAuto",
        "$changeStream",
        "$changeStreamSplitLargeEvent",
        "$collStats",
        "$count",
        "$currentOp",
        "$densify",
        "$documents",
        "$facet",
        "$fill",
        "$geoNear",
        "$graphLookup",
        "$group",
        "$indexStats",
        "$limit",
        "$listLocalSessions",
        "$listSampledQueries",
        "$listSearchIndexes",
        "$listSessions",
        "$lookup",
        "$match",
        "$merge",
        "$out",
        "$planCacheStats",
        "$project",
        "$redact",
        "$replaceRoot",
        "$replaceWith",
        "$sample",
        "$search",
        "$searchMeta",
        "$set",
        "$setWindowFields",
        "$shardedDataDistribution",
        "$skip",
        "$sort",
        "$sortByCount",
        "$unionWith",
        "$unset",
        "$unwind",
        "$vectorSearch",
    }
)


def unknown_stage(name: str, where: str = "") -> CommandError:
    """40324 for a stage name MongoDB does not have; BadValue for one the double lacks."""
    if name in KNOWN_STAGES:
        return not_emulated(f"the {name} stage {where}".rstrip())
    return CommandError(40324, f"Unrecognized pipeline stage name: '{name}'")


def not_emulated(what: str) -> CommandError:
    """The error for a real MongoDB feature the double deliberately does not implement."""
    return CommandError(
        2, f"{what} is not supported by the MongoDB wire double (see its module docstring)"
    )
