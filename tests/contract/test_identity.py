"""_id identity and out-of-range dates: the MongoDB behaviour shared.documents and the codec follow.

``shared.documents.id_token`` treats values as one ``_id`` exactly when MongoDB does; these
tests pin what the server does with the same values (a duplicate-key error means "one
``_id``"), and that a date outside years 1..9999 is stored and handed back -- by ``find``
and by the change stream -- as ``DatetimeMS`` under ``DATETIME_AUTO``.
"""

from __future__ import annotations

from typing import Any

import pytest
from bson import Decimal128, Int64
from bson.datetime_ms import DatetimeMS
from pymongo.errors import DuplicateKeyError

from shared.clients import MONGO_DOCUMENT_OPTIONS
from shared.documents import id_token
from tests.contract.streams import AWAIT_MS, drain
from tests.support.mongo_fixtures import MongoTarget

pytestmark = pytest.mark.integration


async def test_numbers_of_every_type_with_one_value_are_one_id(mongo_target: MongoTarget) -> None:
    """After _id 1, Int64(1), 1.0 and Decimal128('1.000') are duplicates; True is another _id."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1, "v": "int"})
        same: list[Any] = [Int64(1), 1.0, Decimal128("1.000")]
        for value in same:
            with pytest.raises(DuplicateKeyError):
                await coll.insert_one({"_id": value})
            assert (await coll.find_one({"_id": value}) or {}).get("v") == "int"
            assert id_token(value) == id_token(1)
        await coll.insert_one({"_id": True, "v": "bool"})
        assert id_token(True) != id_token(1)
    finally:
        await client.close()


async def test_embedded_document_ids_differ_by_field_order(mongo_target: MongoTarget) -> None:
    """{a: 1, b: 2} and {b: 2, a: 1} are two _ids; {a: 1.0, b: Int64(2)} is the first again."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": {"a": 1, "b": 2}})
        await coll.insert_one({"_id": {"b": 2, "a": 1}})
        assert id_token({"a": 1, "b": 2}) != id_token({"b": 2, "a": 1})
        with pytest.raises(DuplicateKeyError):
            await coll.insert_one({"_id": {"a": 1.0, "b": Int64(2)}})
        assert id_token({"a": 1.0, "b": Int64(2)}) == id_token({"a": 1, "b": 2})
    finally:
        await client.close()


async def test_dates_beyond_year_9999_come_back_as_datetime_ms(mongo_target: MongoTarget) -> None:
    """find and the change stream's post-image return a year-10000 date as DatetimeMS."""
    late = DatetimeMS(253_402_300_800_000)
    client = mongo_target.client(**MONGO_DOCUMENT_OPTIONS)
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            await coll.insert_one({"_id": "d", "when": late, "early": DatetimeMS(-1)})
            (event,) = await drain(stream, 1)
        found = await coll.find_one({"_id": "d"})
        assert found is not None and found["when"] == late
        assert event["fullDocument"]["when"] == late
        assert type(found["early"]).__name__ == "datetime"  # in range: a datetime
    finally:
        await client.close()
