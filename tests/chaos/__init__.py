"""The fault-injection suite (issues 8, 11): nothing missed, nothing stale, under failure and load.

Each scenario starts a fresh fleet of real processes -- a redis-server, the MongoDB wire
double, two watchers and three service replicas (:mod:`tests.support.fleet`) -- keeps a
writer changing the collection through PyMongo, an event sender posting blob events
for configs that always exist and a reader asking every replica for the keys being
changed, injects its fault mid-burst, then stops the writes and waits for the fleet to
settle. The verdict, for every scenario:

* every replica's cache equals the collection exactly (:mod:`tests.chaos.digesting`;
  the diff is printed when it does not);
* every blob event sent for an existing config was accepted (503s retried, as Event Grid
  would);
* on the channel, epochs never go backwards and sequence numbers are gap-free across
  leaders (:mod:`tests.chaos.observing`);
* no replica answered an older version of a key than it had answered before, or a
  deleted config again (monotonic reads), and no answer was older than a write
  acknowledged more than ``SCC_MAX_STALENESS_S`` + 1 s before the read (bounded
  staleness, :mod:`tests.chaos.consistency`); full reloads are counted and reported;
* no process died or logged a traceback;
* plus each scenario's own invariants (see its module).

Modules: ``profile`` (short/long sizes, fleet timings), ``configs`` (documents, dotted
keys), ``writer`` (and its ledger of writes), ``reading``, ``consistency``, ``observing``,
``probing``, ``events``, ``fuzzing``, ``digesting``, ``dead_redis``, ``ledger``, ``rig``,
``settling`` (the verdict), ``running``, ``reporting`` (results and the table),
``scenarios/`` (one module per scenario), ``errors``. Run ``python -m tests.chaos --help``;
the short profile of every scenario also runs in the test command
(``tests/e2e/test_chaos_short.py``).
"""
