"""A MongoDB wire-protocol double that looks like a 7.0 replica-set primary.

Why: the project tails a change stream and reads ``source_configs`` through the real
``pymongo.AsyncMongoClient``, but no MongoDB server can run here. The double speaks the
wire protocol (OP_MSG both ways with kind-1 document sequences; OP_QUERY→OP_REPLY for the
legacy ``hello``/``isMaster`` handshake; no compression) so the *real* driver, with its
real retry, resume and server-monitoring logic, runs against it. It is meant to behave like
documented MongoDB 7.0; wherever it does not emulate something it refuses with an error
that says so rather than inventing behaviour. The contract tests in ``tests/contract`` run
the same assertions against it and against a real replica set.

What it does
    * ``hello``/``isMaster`` as the only member of replica set ``rs0`` (``hosts``,
      ``primary`` and ``me`` are the listening ``host:port``; maxWireVersion 21;
      ``topologyVersion``; awaitable hello), so both ``?directConnection=true`` and
      ``?replicaSet=rs0`` URIs work. ``$clusterTime`` (zero signature) and
      ``operationTime`` on every reply.
    * CRUD: insert (duplicate key → writeErrors 11000), update ($set, $unset, $inc, $mul,
      $min, $max, $setOnInsert, $currentDate, $push/$addToSet with $each; replacements;
      pipeline updates with $set/$addFields/$unset/$project/$replaceRoot; upsert; multi;
      documents nested deeper than 100 levels are refused with 15 Overflow), delete (limit
      0/1), findAndModify, find (equality incl. dotted paths and arrays,
      $in/$nin/$ne/$gt/$gte/$lt/$lte/$exists/$not/$and/$or/$nor; sort, skip,
      limit, batchSize, singleBatch, plain projections), getMore, killCursors, count,
      distinct, aggregate ($match/$sort/$skip/$limit/$project/$count/$group with
      $sum/$count/$min/$max/$first/$last; 40324 for a stage MongoDB does not have),
      create, drop, renameCollection (within a database), dropDatabase, listCollections,
      listDatabases, createIndexes/listIndexes/dropIndexes (unique indexes enforced),
      ping, buildInfo (7.0.0), session commands, getCmdLineOpts/serverStatus/getParameter
      (test commands enabled, no auth, in-memory storage) and configureFailPoint
      (``failCommand``, ``failGetMoreAfterCursorCheckout``; see ``failpoints.py``).
      Retryable writes are deduplicated by (lsid, txnNumber) like the server. Unknown
      commands → 59 CommandNotFound, unknown fail points → 266 FailPointSetFailed.
    * Change streams on a collection, a database or the cluster: ``$changeStream`` with
      ``fullDocument`` default/updateLookup/whenAvailable/required and
      ``fullDocumentBeforeChange`` (pre- and post-images of collections created or
      collMod-ed with ``changeStreamPreAndPostImages``), ``resumeAfter``, ``startAfter``,
      ``startAtOperationTime``, followed by ``$match`` and ``$project`` stages (an event
      whose ``_id`` was changed fails with 280); a readConcern other than majority is
      refused (72). Events: insert, update (array deltas with ``truncatedArrays``),
      replace, delete, drop, rename (with ``to``), dropDatabase, invalidate; with
      ``showExpandedEvents`` also create, createIndexes, dropIndexes, modify (collMod),
      ``collectionUUID``,
      ``operationDescription`` and ``disambiguatedPaths``.
      ``postBatchResumeToken`` on every cursor reply; getMore waits up to ``maxTimeMS``
      (default 1 s) and wakes on a write. A no-op advances cluster time every
      ``noop_interval`` seconds (server: 10 s).
      Errors as on the server: 260 (resumeAfter an invalidate, unknown token), 9 (token
      that does not parse), 280 (token of an event that never happened, or issued by
      another deployment such as an earlier run of the double), 286 (history lost).

Control: the ``doubleFault`` command on the ``admin`` database (any client can send it),
mirrored by :class:`MongoDouble` methods for in-process tests:
    ``{doubleFault: "hangup"[, includeSelf: bool]}``          → ``hangup()``
    ``{doubleFault: "failCommands", commands: [names], times: N, code: C[, codeName,
      errmsg, errorLabels: [...], closeConnection: bool]}``  → ``fail_commands(...)``
      (a fail point like failCommand's; labels default to the server's once it knows the
      cursor: ResumableChangeStreamError for resumable codes on change-stream
      aggregate/getMore, RetryableWriteError on retryable writes; a not-primary/shutdown
      code also bumps ``topologyVersion`` as a real step-down does)
    ``{doubleFault: "forgetHistory"}``                        → ``forget_history()``
    ``{doubleFault: "historyLimit", entries: N|null}``         → ``set_history_limit(n)``
    ``{doubleFault: "latency", ms: N}``                        → ``set_latency(ms)``
    ``{doubleFault: "commandCounts"[, reset: bool]}`` → ``{counts}``  ``command_counts()``
    ``{doubleFault: "resetCommandCounts"}``                    → ``reset_command_counts()``
    ``{doubleFault: "seed"[, db, collection], documents: [...] | json: "<ext JSON>"}``
                                                               → ``insert_documents(...)``
    ``{doubleFault: "clear"}`` (rules, fail points, latency, history cap) → ``clear_faults()``
    ``{doubleFault: "status"}``                                (pending rules, history size)

What it does NOT emulate
    authentication and TLS, transactions (refused with code 20), compression, sessions
    beyond retryable-write deduplication (no causal consistency or snapshot reads; read
    and write concerns are accepted and ignored, but a change stream refuses a read concern
    other than majority as the server does), replication (one member; no secondaries,
    elections or rollbacks; every write is majority-committed at once), a real oplog (the
    history is an in-memory list and tokens are the double's own opaque format, so they
    are not interchangeable with a real server's), collMod options other than
    changeStreamPreAndPostImages, views, ``$changeStreamSplitLargeEvent``, renameCollection
    across databases, capped collections and tailable find cursors, views, collation
    (refused), regex queries, $expr/$where/$text, aggregation expression operators other
    than $literal, array filters (refused), multikey semantics of unique indexes, cursor
    timeouts (cursors live until exhausted or killed), snapshot isolation of reads (a
    find/aggregate result is fixed when its first batch is served), maxTimeMS on anything
    but change-stream getMore, strict rejection of unknown command fields, and persistence
    (everything is in memory).

Run standalone: ``python -m tests.support.mongo_double --port 0 [--seed FILE.json]``.
"""

from .double import MongoDouble
from .server import DoubleServer
from .state import DEFAULT_COLLECTION, DEFAULT_DB, DoubleConfig

__all__ = ["DEFAULT_COLLECTION", "DEFAULT_DB", "DoubleConfig", "DoubleServer", "MongoDouble"]
