"""Integration tests of the scc operator CLI against a real redis-server."""
