"""Fixtures for every suite: the real redis-server rig, the MongoDB wire double, task hygiene."""

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.mongo_fixtures",
    "tests.support.hygiene",
]
