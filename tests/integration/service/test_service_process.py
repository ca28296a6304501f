"""``python -m service`` as a real process: one-line config errors, uvicorn, clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from tests.integration.service.replica_rig import FakeLeader, wait_for
from tests.support.mongo_double import MongoDouble
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def clean_env(**scc: str) -> dict[str, str]:
    """The test's environment without any SCC_* variable, plus ``scc``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCC_")}
    return {**env, **scc}


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "SCC_MONGODB_URI"),
        ({"SCC_MONGODB_URI": "mongodb://h", "SCC_HEARTBEAT_INTERVAL_MS": "soon"}, "SCC_HEARTBEAT"),
        ({"SCC_MONGODB_URI": "postgres://nope"}, "SCC_MONGODB_URI"),
    ],
)
def test_bad_environment_exits_2_with_one_line(env: dict[str, str], names: str) -> None:
    """A missing or malformed variable prints one line naming it and exits with status 2."""
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        env=clean_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scc-service: ") and names in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


async def test_runs_under_uvicorn_and_stops_cleanly_on_sigterm(
    redis_url: str, mongo_double: MongoDouble, tmp_path: Path
) -> None:
    """The process answers /health/live, becomes ready, and shuts down cleanly on SIGTERM."""
    mongo_double.insert_documents(
        [{"source_id": "p1"}], db="ingestion", collection="source_configs"
    )
    port = free_port()
    keys = Keys("scc-proc")
    env = clean_env(
        SCC_MONGODB_URI=mongo_double.uri,
        SCC_REDIS_URL=redis_url,
        SCC_NAMESPACE=keys.namespace,
        SCC_INSTANCE_ID="proc-1",
        SCC_HTTP_HOST="127.0.0.1",
        SCC_HTTP_PORT=str(port),
        SCC_HEARTBEAT_INTERVAL_MS="250",
        SCC_LOG_FORMAT="json",
    )
    log = (tmp_path / "service.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    redis = aioredis.Redis.from_url(redis_url)
    leader = FakeLeader(redis, keys)
    await leader.take()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:

            async def answers(path: str) -> bool:
                assert proc.returncode is None, (tmp_path / "service.log").read_text()
                try:
                    return (await http.get(path)).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(lambda: answers("/health/live"), within_s=20, what="live")
            async with leader.beating(0.25):
                await wait_for(lambda: answers("/health/ready"), within_s=20, what="ready")
                assert (await http.get("/configs/p1")).status_code == 200
                metrics = await http.get("/metrics")
                assert metrics.status_code == 200 and "source_config_cache_size 1.0" in metrics.text
                assert await redis.exists(keys.replica("proc-1"))
                proc.send_signal(signal.SIGTERM)
                status = await asyncio.wait_for(proc.wait(), timeout=15)
        # uvicorn re-raises the signal it handled once shutdown is complete
        assert status in (0, -signal.SIGTERM), (tmp_path / "service.log").read_text()
        assert "Application shutdown complete." in (tmp_path / "service.log").read_text()
        assert not await redis.exists(keys.replica("proc-1"))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        await redis.aclose()
