"""Settings: defaults, the flat SCC_* names, and one-line errors naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.errors import ConfigError
from shared.keys import Keys
from shared.settings import RedisSettings, load_group, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SCC_"):
            monkeypatch.delenv(name)


def test_defaults_follow_design(monkeypatch: pytest.MonkeyPatch) -> None:
    """With only the MongoDB URI set, every other setting takes the documented default."""
    monkeypatch.setenv("SCC_MONGODB_URI", "mongodb://db:27017/?replicaSet=rs0")
    s = load_settings()
    assert s.mongo.collection == "source_configs"
    assert s.mongo.key_field == "source_id"
    assert s.redis.namespace == "scc"
    assert s.process.log_format == "json"
    assert s.security.message_hmac_key is None
    assert s.process.instance_id


def test_flat_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each group reads the flat DESIGN.md variable names, e.g. SCC_LEADER_TTL_MS."""
    monkeypatch.setenv("SCC_MONGODB_URI", "mongodb+srv://user:pw@cluster.example.net/")
    monkeypatch.setenv("SCC_LEADER_TTL_MS", "2500")
    monkeypatch.setenv("SCC_KEY_FIELD", "name")
    monkeypatch.setenv("SCC_NAMESPACE", "blue")
    monkeypatch.setenv("SCC_LOG_FORMAT", "CONSOLE")
    s = load_settings()
    assert s.timing.leader_ttl_ms == 2500
    assert s.mongo.key_field == "name"
    assert s.mongo.uri.get_secret_value().startswith("mongodb+srv://")
    assert s.redis.namespace == "blue"
    assert s.process.log_format == "console"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "SCC_MONGODB_URI: is required but not set"),
        ({"SCC_MONGODB_URI": "m://x", "SCC_LEADER_TTL_MS": "abc"}, "SCC_LEADER_TTL_MS: Input"),
        ({"SCC_MONGODB_URI": "m://x", "SCC_HTTP_PORT": "70000"}, "SCC_HTTP_PORT: Input"),
        ({"SCC_MONGODB_URI": "m://x", "SCC_REDIS_URL": "http://r"}, "SCC_REDIS_URL: Value error"),
        ({"SCC_MONGODB_URI": "m://x", "SCC_LOG_FORMAT": "xml"}, "SCC_LOG_FORMAT: Input"),
        ({"SCC_MONGODB_URI": "m://x", "SCC_MESSAGE_HMAC_KEY": "short"}, "SCC_MESSAGE_HMAC_KEY:"),
        (
            {"SCC_MONGODB_URI": "m://x", "SCC_PUBLISH_BATCH_MAX_CHANGES": "0"},
            "SCC_PUBLISH_BATCH_MAX_CHANGES: Input should be greater than or equal to 1",
        ),
        (
            {"SCC_MONGODB_URI": "m://x", "SCC_PUBLISH_BATCH_MAX_BYTES": "2000000"},
            "SCC_PUBLISH_BATCH_MAX_BYTES: Input should be less than or equal to 1048576",
        ),
    ],
)
def test_bad_values_raise_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    """A missing or malformed variable raises ConfigError whose single line names it."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert text.startswith(expected)
    assert "\n" not in text


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rejected secret (the HMAC key) is named but its value never printed."""
    monkeypatch.setenv("SCC_MONGODB_URI", "m://x")
    monkeypatch.setenv("SCC_MESSAGE_HMAC_KEY", "tooshort")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "tooshort" not in str(info.value)


def test_groups_load_alone() -> None:
    """The CLI can load only the Redis group without a MongoDB URI."""
    assert load_group(RedisSettings, url="redis://h:1/0").namespace == "scc"


def test_entry_point_prints_one_line_and_exits_2() -> None:
    """A process refused for configuration prints one line on stderr and exits with 2."""
    code = (
        "from shared.entry import or_exit; from shared.settings import load_settings;"
        "or_exit('scc-test', load_settings)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "scc-test: configuration error: SCC_MONGODB_URI: is required but not set"
    ]


def test_keys_follow_the_namespace() -> None:
    """Every key and channel is under the namespace; globs in it are escaped for SCAN."""
    keys = Keys("blue")
    assert keys.leader == "{blue}:leader"
    assert keys.invalidations == "{blue}:invalidations"
    assert keys.replica("r1") == "{blue}:replica:r1"
    assert keys.event_seen("d") == "{blue}:events:seen:d"
    assert keys.instance_of(keys.watcher("w-1")) == "w-1"
    assert Keys("a*b").replica_pattern == "{a\\*b}:replica:*"
    for bad in ("has space", "a{b", "a}b", ""):
        with pytest.raises(ValueError):
            Keys(bad)


def test_readme_configuration_table_lists_every_variable() -> None:
    """The README's configuration table names exactly the variables the settings read."""
    from pathlib import Path

    from pydantic import AliasChoices

    from shared import settings as module

    groups = module._Group.__subclasses__()
    assert len(groups) >= 7
    names = set()
    for group in groups:
        for field in group.model_fields.values():
            assert isinstance(field.validation_alias, AliasChoices)
            names.add(str(field.validation_alias.choices[0]))
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    table = readme.split("<!-- settings-table:start -->")[1].split("<!-- settings-table:end -->")[0]
    listed = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `SCC_")}
    assert listed == names
