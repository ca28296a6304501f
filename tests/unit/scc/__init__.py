"""Unit tests of the scc operator CLI (no network)."""
