"""Contract tests: the MongoDB behaviour the project relies on, pinned on the wire double and,
when one is reachable, on a real 7.0 replica set (``mongo_target`` runs each test on both)."""
