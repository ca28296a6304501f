"""The ``redis+sentinel://`` parser: every well-formed URL round-trips, every bad one is named."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from shared.errors import ConfigError
from shared.redis_url import DEFAULT_SENTINEL_PORT, SentinelTarget, parse_redis_url
from shared.settings import RedisSettings, load_group

_NAME = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/:@,[]?#%"),
    min_size=1,
    max_size=12,
)
_HOST = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z0-9-]{1,8}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
_SECRET = st.text(min_size=1, max_size=16)


def _render(target: SentinelTarget, *, omit_db: bool) -> str:
    scheme = "rediss+sentinel" if target.tls else "redis+sentinel"
    userinfo = ""
    if target.username is not None or target.password is not None:
        userinfo = quote(target.username or "", safe="")
        if target.password is not None:
            userinfo += ":" + quote(target.password, safe="")
        userinfo += "@"
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in target.sentinels)
    db = "" if omit_db and target.db == 0 else f"/{target.db}"
    return f"{scheme}://{userinfo}{hosts}/{quote(target.master, safe='')}{db}"


@given(
    sentinels=st.lists(
        st.tuples(_HOST, st.integers(min_value=1, max_value=65535)), min_size=1, max_size=4
    ),
    master=_NAME,
    db=st.integers(min_value=0, max_value=15),
    username=st.none() | _SECRET,
    password=st.none() | _SECRET,
    tls=st.booleans(),
    omit_db=st.booleans(),
)
def test_every_well_formed_url_parses_back_to_its_parts(
    sentinels: list[tuple[str, int]],
    master: str,
    db: int,
    username: str | None,
    password: str | None,
    tls: bool,
    omit_db: bool,
) -> None:
    """A URL rendered from any target parses back to that same target."""
    target = SentinelTarget(
        sentinels=tuple(sentinels),
        master=master,
        db=db,
        username=username,
        password=password,
        tls=tls,
    )
    assert parse_redis_url(_render(target, omit_db=omit_db)) == target


@pytest.mark.parametrize(
    "url", ["redis://h:6379/0", "rediss://u:p@h:6380/1", "unix:///tmp/r.sock", "REDIS://h"]
)
def test_plain_forms_are_left_to_redis_py(url: str) -> None:
    """A plain URL is not a Sentinel target: redis-py parses it itself."""
    assert parse_redis_url(url) is None


def test_a_port_left_out_is_sentinels_default() -> None:
    """``host`` alone means Sentinel's port 26379."""
    target = parse_redis_url("redis+sentinel://a,b:1/m")
    assert target is not None
    assert target.sentinels == (("a", DEFAULT_SENTINEL_PORT), ("b", 1))


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("http://h", "must start with"),
        ("redis+sentinel://h:26379", "names no master"),
        ("redis+sentinel://h:26379/", "names no master"),
        ("redis+sentinel:///m", "sentinel address ''"),
        ("redis+sentinel://a:1,,b:2/m", "sentinel address ''"),
        ("redis+sentinel://h:0/m", "no valid port"),
        ("redis+sentinel://h:70000/m", "no valid port"),
        ("redis+sentinel://h:x/m", "no valid port"),
        ("redis+sentinel://[::1/m", "not [ipv6]:port"),
        ("redis+sentinel://h:1/m/one", "database 'one'"),
        ("redis+sentinel://h:1/m/1/2", "database '1/2'"),
        ("redis+sentinel://h:1/m?db=2", "no ?query but ?role=master or ?role=replica"),
        ("redis+sentinel://h:1/m?role=slave", "no ?query but ?role="),
        ("redis+sentinel://h:1/m?role=replica&x=1", "no ?query but ?role="),
        ("redis+sentinel://h:1/m#frag", "no #fragment"),
    ],
)
def test_malformed_urls_name_the_bad_part(url: str, names: str) -> None:
    """Each malformed form raises ValueError naming what is wrong."""
    with pytest.raises(ValueError) as info:
        parse_redis_url(url)
    assert names in str(info.value)


@given(password=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=20))
def test_settings_reject_a_bad_sentinel_url_in_one_line_without_the_password(
    password: str,
) -> None:
    """SCC_REDIS_URL with a bad Sentinel form fails in one line that names it, secret hidden."""
    password = f"Zq{password}"  # never a word of the message itself ("database", ...)
    with pytest.raises(ConfigError) as info:
        load_group(RedisSettings, url=f"redis+sentinel://u:{password}@h:1/m/x")
    text = str(info.value)
    assert text.startswith("SCC_REDIS_URL: Value error, database 'x'")
    assert password not in text and "\n" not in text


def test_settings_accept_a_sentinel_url_and_its_password() -> None:
    """A good Sentinel URL and SCC_REDIS_SENTINEL_PASSWORD load into the Redis group."""
    settings = load_group(
        RedisSettings,
        url="rediss+sentinel://h1:26379,h2:26380/mymaster/2",
        sentinel_password=SecretStr("s3cret"),
    )
    assert parse_redis_url(settings.url.get_secret_value()) == SentinelTarget(
        sentinels=(("h1", 26379), ("h2", 26380)), master="mymaster", db=2, tls=True
    )
    assert settings.sentinel_password is not None


def test_role_query_names_master_or_replica() -> None:
    """``?role=replica`` / ``?role=master`` parse into the target's role (master by default)."""
    assert parse_redis_url("redis+sentinel://h:1/m/2?role=replica") == SentinelTarget(
        sentinels=(("h", 1),), master="m", db=2, role="replica"
    )
    target = parse_redis_url("redis+sentinel://h:1/m?role=master")
    assert target is not None and target.role == "master"
    target = parse_redis_url("redis+sentinel://h:1/m")
    assert target is not None and target.role == "master"


def test_a_bad_query_never_shows_a_password_with_a_question_mark() -> None:
    """An unencoded '?' in the password is reported without echoing what follows it."""
    with pytest.raises(ValueError) as info:
        parse_redis_url("redis+sentinel://u:pa?ssw0rdZZ@h:1/m")
    assert "ssw0rdZZ" not in str(info.value)


def test_redis_url_rejects_role_replica_in_one_line() -> None:
    """SCC_REDIS_URL takes writes, so ``?role=replica`` there fails at start, naming it."""
    with pytest.raises(ConfigError) as info:
        load_group(RedisSettings, url="redis+sentinel://h:1/m?role=replica")
    text = str(info.value)
    assert text.startswith("SCC_REDIS_URL: ") and "SCC_REDIS_SUBSCRIBE_URL" in text
    assert "\n" not in text


def test_subscribe_url_defaults_to_the_redis_url_and_is_validated() -> None:
    """Unset (or empty) SCC_REDIS_SUBSCRIBE_URL means SCC_REDIS_URL; a bad one names itself."""
    settings = load_group(RedisSettings, url="redis://p:1/0", subscribe_url="")
    assert settings.subscribe_url is None
    assert settings.subscribe_target.get_secret_value() == "redis://p:1/0"
    replica = load_group(
        RedisSettings, url="redis://p:1/0", subscribe_url="redis+sentinel://h:1/m?role=replica"
    )
    assert replica.subscribe_target.get_secret_value().endswith("?role=replica")
    with pytest.raises(ConfigError) as info:
        load_group(RedisSettings, subscribe_url="redis+sentinel://h:1/m?role=slave")
    assert str(info.value).startswith("SCC_REDIS_SUBSCRIBE_URL: Value error, ")


def test_spread_index_follows_an_ordinal_suffix_and_hashes_the_rest() -> None:
    """Numbered instances take consecutive replicas; other ids get a stable hash."""
    from shared.clients import spread_index

    assert [spread_index(f"scc-service-{i}") % 2 for i in range(4)] == [0, 1, 0, 1]
    assert spread_index("pod-abc") == spread_index("pod-abc") != spread_index("pod-abd")
