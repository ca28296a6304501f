"""Parsing Sentinel's ``+switch-master`` announcements."""

from __future__ import annotations

import pytest

from shared.sentinel_watching import parse_switch


def test_a_switch_announcement_names_the_old_and_new_primary() -> None:
    """``name old-ip old-port new-ip new-port`` parses into its two addresses."""
    switch = parse_switch(b"sccmaster 127.0.0.1 6380 127.0.0.1 6381")
    assert switch is not None
    assert (switch.master, switch.old, switch.new) == (
        "sccmaster",
        ("127.0.0.1", 6380),
        ("127.0.0.1", 6381),
    )


@pytest.mark.parametrize("data", [b"", b"m 1.2.3.4 x 1.2.3.5 2", "m a 1 b", b"\xff\xfe"])
def test_anything_else_is_not_a_switch(data: bytes | str) -> None:
    """A malformed announcement is ignored (None), never an exception."""
    assert parse_switch(data) is None
