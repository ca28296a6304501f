"""The watcher: follows the MongoDB change stream as the fenced leader and publishes changes.

Run several (``python -m watcher``); one leads. Modules, one job each:

``electing``     lease in Redis, the awaitable leadership toggle, local deadlines
``watching``     the change-stream loop: resume, resync, publish-then-save, retries
``mongo_source`` PyMongo adapter: opens streams, classifies driver errors
``resuming``     the resume-token store (``{ns}:resume``, fenced writes)
``translating``  change event → messages (key map for deletes, key changes)
``publishing``   fenced, numbered publish and heartbeats
``reporting``    counters, ``/metrics`` instruments, the ``{ns}:watcher:{id}`` hash
``serving``      the tiny HTTP server for health and metrics
``running``      wiring, supervision and ordered shutdown
``errors``       the exception tree
"""
