"""Benchmarks of source-config-cache, each a ratio against a baseline measured in the same run.

Why a package of its own: the numbers that justify the design (an O(1) hit path, one
MongoDB reader for the whole fleet, millisecond fan-out, a bounded failover) are evidence,
not test assertions, so they live outside ``tests/`` and never fail a build for being slow.
They do fail loudly when they cannot *run*.

Every figure is measured next to a baseline in the same process and minute, because
absolute times on a shared two-core machine drift:

* the **per-replica design** (:mod:`bench.per_replica`), the design this system replaces;
* the **limit**: the bare mechanism underneath (``dict.get``, a raw redis-py PUBLISH to
  subscribers, a raw ``find().to_list()``, a FastAPI endpoint that does nothing).

Run ``python -m bench [--quick|--full] [--only NAME ...] [--out DIR]``; see ``bench/README.md``.
"""
