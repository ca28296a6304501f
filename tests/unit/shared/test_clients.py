"""Every process decodes MongoDB documents one way: the client's codec equals DOCUMENT_CODEC."""

from __future__ import annotations

import bson
from bson.datetime_ms import DatetimeMS

from shared.clients import DOCUMENT_CODEC, make_mongo
from shared.settings import MongoSettings, load_group


async def test_the_client_decodes_with_document_codec_and_out_of_range_dates_survive() -> None:
    """make_mongo's codec is DOCUMENT_CODEC, under which a year-10000 date is a DatetimeMS."""
    settings = load_group(MongoSettings, uri="mongodb://127.0.0.1:1", database="d")
    client = make_mongo(settings, appname="test-clients", connect=False)
    try:
        assert client.codec_options == DOCUMENT_CODEC
    finally:
        await client.close()
    raw = bson.encode({"_id": 1, "when": DatetimeMS(253_402_300_800_000)})
    assert bson.decode(raw, DOCUMENT_CODEC)["when"] == DatetimeMS(253_402_300_800_000)
