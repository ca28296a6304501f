"""All configuration of source-config-cache, read once from ``SCC_*`` environment variables.

One object, nested by concern; each process builds it once at its entry point with
:func:`load_settings` and passes the parts it needs down as ``settings=``. No other module
reads the environment. A missing or malformed variable raises :class:`ConfigError` whose
one-line message names the variable, so start-up fails with a clear line, not a traceback.

The variable names are the flat ones of DESIGN.md (``SCC_MONGODB_URI``,
``SCC_LEADER_TTL_MS``, ...); each group below lists the variables it owns.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError
from shared.redis_url import parse_redis_url


def _default_instance_id() -> str:
    # host-pid as DESIGN.md says, plus a short random suffix: a container restarted in
    # the same pod keeps host and pid 1, and must not be mistaken for its dead self.
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class _Group(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCC_", extra="ignore", frozen=True, validate_default=True
    )


class MongoSettings(_Group):
    """Where the source configs live."""

    uri: SecretStr = Field(validation_alias=AliasChoices("SCC_MONGODB_URI", "uri"))
    """MongoDB connection string (``mongodb://`` or ``mongodb+srv://``); validated by PyMongo."""

    database: str = Field(
        default="ingestion", validation_alias=AliasChoices("SCC_MONGODB_DATABASE", "database")
    )
    """Database holding the collection."""

    collection: str = Field(
        default="source_configs",
        validation_alias=AliasChoices("SCC_MONGODB_COLLECTION", "collection"),
    )
    """Collection of source configs that every replica mirrors."""

    key_field: str = Field(
        default="source_id", validation_alias=AliasChoices("SCC_KEY_FIELD", "key_field")
    )
    """Document field that identifies a config (unique, string)."""

    timeout_ms: int = Field(
        default=5000, ge=100, validation_alias=AliasChoices("SCC_MONGODB_TIMEOUT_MS", "timeout_ms")
    )
    """Server selection / socket timeout for MongoDB operations, in milliseconds."""

    @field_validator("database", "collection", "key_field")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class RedisSettings(_Group):
    """Where leases, tokens, sequence numbers and the invalidation channel live."""

    url: SecretStr = Field(
        default=SecretStr("redis://localhost:6379/0"),
        validation_alias=AliasChoices("SCC_REDIS_URL", "url"),
    )
    """Redis URL: ``redis://``, ``rediss://`` (TLS), ``unix://``, or a Sentinel group
    ``redis+sentinel://[user:pw@]h:p[,h:p...]/MASTER[/DB]`` (``rediss+sentinel://`` for TLS)."""

    sentinel_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SCC_REDIS_SENTINEL_PASSWORD", "sentinel_password"),
    )
    """Password of the sentinels themselves (Sentinel URLs only; the URL's own is the primary's)."""

    subscribe_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SCC_REDIS_SUBSCRIBE_URL", "subscribe_url"),
    )
    """Where service replicas subscribe to the invalidation channel (default: ``SCC_REDIS_URL``):
    typically a Redis replica (PUBLISH arrives there through replication), or a Sentinel
    group with ``?role=replica`` to pick one of the master's replicas. Seq reads, heartbeat
    hashes and events stay on ``SCC_REDIS_URL``."""

    namespace: str = Field(
        default="scc", validation_alias=AliasChoices("SCC_NAMESPACE", "namespace")
    )
    """Prefix of every key and channel; two deployments can share one Redis."""

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        target = parse_redis_url(value.get_secret_value())  # ValueError names the bad part
        if target is not None and target.role != "master":
            raise ValueError(
                "?role=replica cannot take writes; use it in SCC_REDIS_SUBSCRIBE_URL only"
            )
        return value

    @field_validator("subscribe_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # A chart or compose file that leaves the variable empty means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("subscribe_url")
    @classmethod
    def _subscribe_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_redis_url(value.get_secret_value())  # ValueError names the bad part
        return value

    @property
    def subscribe_target(self) -> SecretStr:
        """The URL the invalidation channel is subscribed through (``url`` unless set)."""
        return self.url if self.subscribe_url is None else self.subscribe_url

    @field_validator("namespace")
    @classmethod
    def _namespace_shape(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be non-empty and contain no whitespace")
        if "{" in value or "}" in value:
            raise ValueError("may not contain { or } (every key's hash tag is {namespace})")
        return value


class TimingSettings(_Group):
    """Lease, heartbeat and staleness timing shared by watchers and replicas."""

    leader_ttl_ms: int = Field(
        default=5000, ge=300, validation_alias=AliasChoices("SCC_LEADER_TTL_MS", "leader_ttl_ms")
    )
    """Leader lease time-to-live; a dead leader is replaced within about this long."""

    heartbeat_interval_ms: int = Field(
        default=1000,
        ge=50,
        validation_alias=AliasChoices("SCC_HEARTBEAT_INTERVAL_MS", "heartbeat_interval_ms"),
    )
    """How often the leader publishes a heartbeat; replicas call a watcher silent after 3."""

    max_await_ms: int = Field(
        default=1000, ge=10, validation_alias=AliasChoices("SCC_MAX_AWAIT_MS", "max_await_ms")
    )
    """Longest a change-stream getMore waits before an (empty) batch comes back."""

    token_save_interval_ms: int = Field(
        default=1000,
        ge=0,
        validation_alias=AliasChoices("SCC_TOKEN_SAVE_INTERVAL_MS", "token_save_interval_ms"),
    )
    """Minimum time between resume-token saves on empty batches (quiet collection)."""

    max_staleness_s: float = Field(
        default=30.0, gt=0, validation_alias=AliasChoices("SCC_MAX_STALENESS_S", "max_staleness_s")
    )
    """While the change stream is silent, lookups read MongoDB once the cache is this old."""

    negative_ttl_ms: int = Field(
        default=2000, ge=0, validation_alias=AliasChoices("SCC_NEGATIVE_TTL_MS", "negative_ttl_ms")
    )
    """How long a "not in MongoDB" answer is remembered (cleared early by a message)."""

    resync_jitter_ms: int = Field(
        default=250,
        ge=0,
        validation_alias=AliasChoices("SCC_RESYNC_JITTER_MS", "resync_jitter_ms"),
    )
    """Replicas wait a random 0..this before every reload (proven loss or broadcast)."""


class HttpSettings(_Group):
    """The process's own HTTP server (health, metrics, and on replicas the events API)."""

    host: str = Field(default="0.0.0.0", validation_alias=AliasChoices("SCC_HTTP_HOST", "host"))
    """Address to listen on."""

    port: int = Field(
        default=8080, ge=0, le=65535, validation_alias=AliasChoices("SCC_HTTP_PORT", "port")
    )
    """Port to listen on (0 picks a free one)."""

    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices("SCC_HTTP_HEADER_TIMEOUT_S", "header_timeout_s"),
    )
    """A connection that has not sent a complete request head this long is closed."""

    keepalive_timeout_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias=AliasChoices("SCC_HTTP_KEEPALIVE_TIMEOUT_S", "keepalive_timeout_s"),
    )
    """An idle keep-alive connection is closed after this long."""

    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices("SCC_HTTP_BODY_TIMEOUT_S", "body_timeout_s"),
    )
    """``POST /events/blob``: a body not received completely this long is refused (408)."""

    allowed_blob_hosts: str = Field(
        default="",
        validation_alias=AliasChoices("SCC_ALLOWED_BLOB_HOSTS", "allowed_blob_hosts"),
    )
    """Comma-separated ``data.url`` hosts accepted (``*.suffix`` allowed); unset: any host."""

    events_dedup_window_s: float = Field(
        default=3600.0,
        ge=0,
        validation_alias=AliasChoices("SCC_EVENTS_DEDUP_WINDOW_S", "events_dedup_window_s"),
    )
    """How long a stored event's id (with its source) is remembered; a retry is not stored twice."""

    events_stream_maxlen: int = Field(
        default=100_000,
        ge=1,
        validation_alias=AliasChoices("SCC_EVENTS_STREAM_MAXLEN", "events_stream_maxlen"),
    )
    """Most entries each events stream (accepted, dead letters) keeps; the oldest go first."""

    events_stream_max_age_s: float = Field(
        default=7 * 86400.0,
        ge=0,
        validation_alias=AliasChoices("SCC_EVENTS_STREAM_MAX_AGE_S", "events_stream_max_age_s"),
    )
    """Entries older than this are trimmed from the events streams (0: no age cap)."""

    events_stream_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        validation_alias=AliasChoices("SCC_EVENTS_STREAM_MAX_BYTES", "events_stream_max_bytes"),
    )
    """About the most Redis memory each events stream may take (0: no byte cap)."""

    events_consumer_group: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SCC_EVENTS_CONSUMER_GROUP", "events_consumer_group"),
    )
    """Consumer group reading the events streams; trimmed entries it had not read are counted."""

    events_min_replicas: int = Field(
        default=0,
        ge=0,
        validation_alias=AliasChoices("SCC_EVENTS_MIN_REPLICAS", "events_min_replicas"),
    )
    """Redis replicas that must confirm (``WAIT``) stored events before a 2xx; else 503."""

    events_replica_timeout_ms: int = Field(
        default=1000,
        ge=1,
        validation_alias=AliasChoices("SCC_EVENTS_REPLICA_TIMEOUT_MS", "events_replica_timeout_ms"),
    )
    """How long ``WAIT`` waits for ``SCC_EVENTS_MIN_REPLICAS`` confirmations."""

    @property
    def blob_hosts(self) -> frozenset[str]:
        """``SCC_ALLOWED_BLOB_HOSTS`` as a set of lower-case hosts (empty: any host)."""
        hosts = (h.strip().lower().rstrip(".") for h in self.allowed_blob_hosts.split(","))
        return frozenset(h for h in hosts if h)


class SecuritySettings(_Group):
    """Optional shared secrets."""

    message_hmac_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SCC_MESSAGE_HMAC_KEY", "message_hmac_key"),
    )
    """When set, watchers sign every message (HMAC-SHA256) and replicas reject unsigned ones."""

    ingest_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SCC_INGEST_TOKEN", "ingest_token")
    )
    """When set, ``POST /events/blob`` requires it (``X-Ingest-Token`` header or ``?token=``)."""

    @field_validator("message_hmac_key", "ingest_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters when set")
        return value


class ProcessSettings(_Group):
    """Identity and logging of this process."""

    instance_id: str = Field(
        default_factory=_default_instance_id,
        validation_alias=AliasChoices("SCC_INSTANCE_ID", "instance_id"),
    )
    """Unique name of this process in Redis (default: host-pid-random)."""

    log_format: Literal["json", "console"] = Field(
        default="json", validation_alias=AliasChoices("SCC_LOG_FORMAT", "log_format")
    )
    """``json`` for production, ``console`` for a terminal."""

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", validation_alias=AliasChoices("SCC_LOG_LEVEL", "log_level")
    )
    """Lowest level logged."""

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("instance_id")
    @classmethod
    def _no_blank_id(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be non-empty and contain no whitespace")
        if "{" in value or "}" in value:
            raise ValueError("may not contain { or } (every key's hash tag is {namespace})")
        return value


class WatcherSettings(_Group):
    """Knobs only the watcher reads."""

    max_message_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=1024 * 1024,
        validation_alias=AliasChoices("SCC_MAX_MESSAGE_BYTES", "max_message_bytes"),
    )
    """Largest message the watcher sends; a bigger document goes key-only with refetch."""

    publish_batch_max_changes: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        validation_alias=AliasChoices("SCC_PUBLISH_BATCH_MAX_CHANGES", "publish_batch_max_changes"),
    )
    """Most changes one batch message carries (1: every change its own ``v: 1`` message)."""

    publish_batch_max_bytes: int = Field(
        default=256 * 1024,
        ge=4096,
        le=1024 * 1024,
        validation_alias=AliasChoices("SCC_PUBLISH_BATCH_MAX_BYTES", "publish_batch_max_bytes"),
    )
    """Largest batch message; a change-stream batch beyond it goes out as several messages."""

    ready_max_lag_ms: int = Field(
        default=10_000,
        ge=100,
        validation_alias=AliasChoices("SCC_WATCHER_READY_MAX_LAG_MS", "ready_max_lag_ms"),
    )
    """A leader is not ready once its change stream has been silent (no batch) this long."""


_G = TypeVar("_G", bound=_Group)


def load_group(cls: type[_G], **overrides: Any) -> _G:
    """Build one settings group from the environment (``overrides`` win).

    Raises :class:`ConfigError` naming the first bad variable, e.g.
    ``SCC_LEADER_TTL_MS: Input should be a valid integer (got 'abc')``.
    """
    try:
        return cls(**overrides)
    except ValidationError as e:
        raise ConfigError(_one_line(cls, e)) from e


def _one_line(cls: type[_Group], error: ValidationError) -> str:
    first = error.errors()[0]
    loc = str(first["loc"][0]) if first["loc"] else "?"
    name, info = loc, None
    for field, candidate in cls.model_fields.items():
        alias = candidate.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else []
        if loc == field or loc in choices:
            name, info = str(choices[0]) if choices else field, candidate
    got = first.get("input")
    shown = "" if first["type"] == "missing" or _is_secret(info) else f" (got {got!r})"
    message = "is required but not set" if first["type"] == "missing" else first["msg"]
    return f"{name}: {message}{shown}"


def _is_secret(info: Any) -> bool:
    return info is not None and "SecretStr" in str(info.annotation)


class Settings:
    """Everything a process may need, grouped; build with :func:`load_settings`."""

    __slots__ = ("http", "mongo", "process", "redis", "security", "timing", "watcher")

    def __init__(
        self,
        *,
        mongo: MongoSettings,
        redis: RedisSettings,
        timing: TimingSettings,
        http: HttpSettings,
        security: SecuritySettings,
        process: ProcessSettings,
        watcher: WatcherSettings | None = None,
    ) -> None:
        self.mongo = mongo
        self.redis = redis
        self.timing = timing
        self.http = http
        self.security = security
        self.process = process
        self.watcher = watcher if watcher is not None else load_group(WatcherSettings)


def load_settings(**overrides: dict[str, Any]) -> Settings:
    """Read every group from the environment; ``overrides`` maps group name → field values.

    Raises :class:`ConfigError` with one line naming the bad variable.
    """
    return Settings(
        mongo=load_group(MongoSettings, **overrides.get("mongo", {})),
        redis=load_group(RedisSettings, **overrides.get("redis", {})),
        timing=load_group(TimingSettings, **overrides.get("timing", {})),
        http=load_group(HttpSettings, **overrides.get("http", {})),
        security=load_group(SecuritySettings, **overrides.get("security", {})),
        process=load_group(ProcessSettings, **overrides.get("process", {})),
        watcher=load_group(WatcherSettings, **overrides.get("watcher", {})),
    )
