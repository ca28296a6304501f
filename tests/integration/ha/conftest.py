"""The Sentinel group fixture for the Redis high-availability tests."""

from tests.support.sentinel_group import sentinel_group

__all__ = ["sentinel_group"]
