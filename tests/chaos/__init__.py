"""The fault-injection suite (issue 8): prove nothing is missed under failure, load and bad input.

Each scenario starts a fresh fleet of real processes -- a redis-server, the MongoDB wire
double, two watchers and three service replicas (:mod:`tests.support.fleet`) -- keeps a
writer changing the collection through PyMongo and an event sender posting blob events
for configs that always exist, injects its fault mid-burst, then stops the writes and
waits for the fleet to settle. The verdict, for every scenario:

* every replica's cache equals the collection exactly (:mod:`tests.chaos.digesting`;
  the diff is printed when it does not);
* every blob event sent for an existing config was accepted (503s retried, as Event Grid
  would);
* on the channel, epochs never go backwards and sequence numbers are gap-free across
  leaders (:mod:`tests.chaos.observing`);
* no process died or logged a traceback;
* plus each scenario's own invariants (see its module).

Modules: ``profile`` (short/long sizes, fleet timings), ``writer``, ``observing``,
``probing``, ``events``, ``fuzzing``, ``digesting``, ``rig`` (one run), ``running``,
``reporting`` (results and the table), ``scenarios/`` (one module per scenario),
``errors``. Run ``python -m tests.chaos --help``; the short profile of every scenario
also runs in the test command (``tests/e2e/test_chaos_short.py``).
"""
