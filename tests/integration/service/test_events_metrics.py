"""A running replica exports what its events sink did: duplicates, trimming, stream length."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.event_schemas import BLOB_CREATED
from tests.integration.service.replica_rig import replica_rig
from tests.support.mongo_double import MongoDouble

pytestmark = pytest.mark.integration


def event(i: int) -> dict[str, object]:
    return {
        "id": f"m{i}",
        "subject": "/blobServices/default/containers/land/blobs/f.csv",
        "eventType": BLOB_CREATED,
        "eventTime": "2026-12-02T00:00:00Z",
    }


async def test_metrics_count_duplicates_and_the_stream_length(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """After a batch and its retry, /metrics shows 3 stored, 3 duplicates and 0 trimmed."""
    config = {"source_id": "m", "ingestion": {"landing_container": "land"}}
    await asyncio.to_thread(
        mongo_double.insert_documents, [config], db="ingestion", collection="source_configs"
    )
    async with replica_rig(redis_url, mongo_double) as rig:
        await rig.wait_ready()
        body = orjson.dumps([event(i) for i in range(3)])
        headers = {"content-type": "application/json"}
        for _ in range(2):
            assert (await rig.http.post("/events/blob", content=body, headers=headers)).is_success
        text = (await rig.http.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("scc_events_duplicates_total", ())] == 3
    assert samples[("scc_events_stream_length", (("stream", "accepted"),))] == 3
    assert samples[("scc_events_trimmed_total", (("stream", "accepted"),))] == 0
    assert samples[("scc_events_trimmed_unread_total", (("stream", "dlq"),))] == 0
    assert samples[("scc_events_total", (("outcome", "accepted"),))] == 6
