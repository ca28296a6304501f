"""schemathesis, every check, over a live replica's ``/openapi.json`` (a bounded, seeded run)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from tests.integration.service.replica_rig import FakeLeader
from tests.integration.service.test_service_process import ROOT, clean_env
from tests.support.mongo_double import MongoDouble
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration
#: Examples per operation and phase; a few hundred requests, seconds on this machine.
EXAMPLES = 25
#: A batch over the documented ``maxItems`` (5,000) is refused with 413 by design.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 408, 413, 415]
"""


async def test_schemathesis_finds_nothing_with_all_checks(
    redis_url: str, mongo_double: MongoDouble, tmp_path: Path
) -> None:
    """Every schemathesis check passes on every operation the replica documents."""
    mongo_double.insert_documents(
        [{"source_id": "p1", "ingestion": {"landing_container": "landing"}}],
        db="ingestion",
        collection="source_configs",
    )
    port = free_port()
    keys = Keys("scc-st")
    env = clean_env(
        SCC_MONGODB_URI=mongo_double.uri,
        SCC_REDIS_URL=redis_url,
        SCC_NAMESPACE=keys.namespace,
        SCC_HTTP_HOST="127.0.0.1",
        SCC_HTTP_PORT=str(port),
        SCC_HEARTBEAT_INTERVAL_MS="250",
        SCC_LOG_LEVEL="error",
    )
    log = (tmp_path / "service.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    redis = aioredis.Redis.from_url(redis_url)
    leader = FakeLeader(redis, keys)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    try:
        await leader.take()
        async with leader.beating():
            await _wait_ready(f"http://127.0.0.1:{port}")
            output, status = await _schemathesis(f"http://127.0.0.1:{port}", config, tmp_path)
        assert status == 0, output[-6000:]
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=20)
        await redis.aclose()
        log.close()


async def _wait_ready(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the replica never became ready"
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/health/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def _schemathesis(base: str, config: Path, cwd: Path) -> tuple[str, int]:
    run = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20261202",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(run.communicate(), timeout=300)
    return output.decode(), run.returncode if run.returncode is not None else -1
