"""Factories for the two clients every process needs, configured the same way everywhere.

MongoDB: one ``AsyncMongoClient`` per event loop, ``uuidRepresentation=standard``, naive
UTC datetimes and ``DATETIME_AUTO`` (out-of-range dates as ``DatetimeMS``), so a document
read by ``find`` equals the same document decoded from a message (see
:mod:`shared.messages`). Redis: redis-py's asyncio client with bounded
connect/read timeouts, so a dead or hung Redis surfaces as an error instead of a hang.
"""

from __future__ import annotations

from typing import Any, Final

import redis.asyncio as aioredis
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from pymongo import AsyncMongoClient
from redis.exceptions import RedisError

from shared.settings import MongoSettings, RedisSettings

#: What a Redis call raises when its connection is gone or unusable: redis-py's errors,
#: OS-level socket errors, and ``RuntimeError`` -- under uvloop (which uvicorn uses), a
#: reconnect racing a closed transport raises "unable to perform operation on
#: <TCPTransport closed=True ...>" from inside redis-py. Adapters catch exactly these.
REDIS_DOWN_ERRORS: Final = (RedisError, OSError, RuntimeError)

#: Options under which a document read from MongoDB equals its message-decoded twin.
#: ``DATETIME_AUTO``: a date outside ``datetime``'s years 1..9999 (legal BSON, easily
#: written from JavaScript or Java) decodes as ``bson.datetime_ms.DatetimeMS`` instead of
#: raising ``InvalidBSON`` -- the default would make one such document unreadable for
#: every process, the change stream included.
MONGO_DOCUMENT_OPTIONS: dict[str, Any] = {
    "uuidRepresentation": "standard",
    "tz_aware": False,
    "datetime_conversion": DatetimeConversion.DATETIME_AUTO,
}
#: The same options as a codec, for decoding raw BSON the way the client would.
DOCUMENT_CODEC: Final[CodecOptions[dict[str, Any]]] = CodecOptions(
    uuid_representation=UuidRepresentation.STANDARD,
    tz_aware=False,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)


def make_mongo(settings: MongoSettings, *, appname: str, **extra: Any) -> AsyncMongoClient[Any]:
    """An async MongoDB client for ``settings.uri`` (PyMongo validates the URI)."""
    options: dict[str, Any] = {
        **MONGO_DOCUMENT_OPTIONS,
        "serverSelectionTimeoutMS": settings.timeout_ms,
        "connectTimeoutMS": settings.timeout_ms,
        "appname": appname,
        **extra,
    }
    return AsyncMongoClient(settings.uri.get_secret_value(), **options)


def make_redis(
    settings: RedisSettings, *, client_name: str, socket_timeout: float = 5.0
) -> aioredis.Redis:
    """An asyncio Redis client (bytes responses) with bounded timeouts."""
    return aioredis.Redis.from_url(
        settings.url.get_secret_value(),
        socket_connect_timeout=min(socket_timeout, 2.0),
        socket_timeout=socket_timeout,
        client_name=client_name,
        decode_responses=False,
    )
