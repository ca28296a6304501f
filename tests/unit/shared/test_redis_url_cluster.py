"""The ``redis+cluster://`` form: startup nodes parse, bad forms fail in one line naming them."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.redis_url import ClusterTarget, parse_cluster_url, parse_redis_url
from shared.settings import RedisSettings, load_group


def test_startup_nodes_credentials_and_tls_parse() -> None:
    """Several nodes (IPv6 too, default port 6379), userinfo and the TLS scheme are read."""
    target = parse_cluster_url("rediss+cluster://u:p%40ss@h1:7000,[::1]:7001,h3/")
    assert target == ClusterTarget(
        nodes=(("h1", 7000), ("::1", 7001), ("h3", 6379)), username="u", password="p@ss", tls=True
    )
    assert parse_redis_url("redis+cluster://h:7000") is None, "no Sentinel target"
    assert parse_cluster_url("redis://h:1/0") is None


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis+cluster://", "cluster node address ''"),
        ("redis+cluster://h:1,", "cluster node address ''"),
        ("redis+cluster://h:x", "no valid port"),
        ("redis+cluster://h:1/2", "no /DB path"),
        ("redis+cluster://h:1?read=1", "no ?query"),
        ("redis+clustr://h:1", "redis+cluster://"),
    ],
)
def test_malformed_cluster_urls_name_the_bad_part(url: str, names: str) -> None:
    """Each malformed form raises ValueError naming what is wrong."""
    with pytest.raises(ValueError) as info:
        parse_redis_url(url)
    assert names in str(info.value)


def test_settings_reject_a_bad_cluster_url_in_one_line_naming_the_variable() -> None:
    """SCC_REDIS_URL with a bad cluster form fails at load, one line, password hidden."""
    with pytest.raises(ConfigError) as info:
        load_group(RedisSettings, url="redis+cluster://u:Zqsecret99@h:70000")
    text = str(info.value)
    assert text.startswith("SCC_REDIS_URL: Value error, cluster node address 'h:70000'")
    assert "Zqsecret99" not in text and "\n" not in text


def test_namespace_with_a_brace_is_refused() -> None:
    """A namespace containing { or } would end the hash tag early: refused at load."""
    with pytest.raises(ConfigError) as info:
        load_group(RedisSettings, namespace="a{b}")
    assert str(info.value).startswith("SCC_NAMESPACE:")
