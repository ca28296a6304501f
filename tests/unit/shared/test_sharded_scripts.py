"""The cluster variant of the publish script: only the pub/sub command differs."""

from __future__ import annotations

import pytest

from shared.scripts import PUBLISH, PUBLISH_SHARDED, sharded


def test_sharded_publish_differs_only_in_spublish() -> None:
    """PUBLISH_SHARDED is PUBLISH with SPUBLISH: same KEYS, ARGV, fence and reply."""
    assert "redis.call('SPUBLISH'," in PUBLISH_SHARDED
    assert "redis.call('PUBLISH'," not in PUBLISH_SHARDED
    assert PUBLISH_SHARDED.replace("'SPUBLISH'", "'PUBLISH'") == PUBLISH


def test_a_script_without_publish_cannot_be_sharded() -> None:
    """Deriving from a script that publishes nothing is a programming error, said at import."""
    with pytest.raises(ValueError, match="no redis.call"):
        sharded("return 1")
