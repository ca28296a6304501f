"""``python -m service`` / ``scc-service``: run one replica under uvicorn.

Why it exists: the only place that turns the environment into a running process.
Settings are read once (``SCC_*``, see ``--help``); a bad variable -- or a MongoDB URI
PyMongo refuses -- prints one line naming it and exits 2, before anything starts.
Signals are uvicorn's: SIGTERM/SIGINT stop intake, run the lifespan shutdown (tasks
stopped, heartbeat hash deleted, clients closed), then uvicorn re-raises the signal, so
the status says "stopped by SIGTERM" (143 in a shell). If a root task dies the
replica is logged as failed, uvicorn is told to stop, and the process exits 1 -- so the
orchestrator restarts it instead of leaving a replica whose cache nobody updates.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import structlog
import uvicorn
from pydantic import AliasChoices, SecretStr
from pymongo.errors import PyMongoError

from service.app import create_app
from service.applying import settle_heap_after_first_load
from service.errors import RootTaskFailed
from service.http_server import server_config
from shared import __version__
from shared.clients import make_mongo
from shared.entry import or_exit
from shared.errors import ConfigError
from shared.settings import (
    HttpSettings,
    MongoSettings,
    ProcessSettings,
    RedisSettings,
    SecuritySettings,
    Settings,
    TimingSettings,
    load_settings,
)
from shared.telemetry import configure_logging

PROGRAM = "scc-service"
#: Exit status when the replica failed after start-up (a root task died).
EXIT_FAILED = 1

log = structlog.get_logger("service")


def _variables() -> str:
    lines = []
    for group in (
        MongoSettings,
        RedisSettings,
        TimingSettings,
        HttpSettings,
        SecuritySettings,
        ProcessSettings,
    ):
        for name, info in group.model_fields.items():
            alias = info.validation_alias
            env = alias.choices[0] if isinstance(alias, AliasChoices) else name
            if info.is_required():
                default = "required"
            elif info.default_factory is not None:
                default = "default computed at start"
            else:
                value = info.get_default()
                shown = value.get_secret_value() if isinstance(value, SecretStr) else value
                default = f"default {shown!r}"
            lines.append(f"  {env}  ({default})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The (option-less) command line: configuration comes from the environment."""
    return argparse.ArgumentParser(
        prog=PROGRAM,
        description=(
            "Run one source-config-cache service replica: an in-memory copy of the "
            "MongoDB source_configs collection kept current through Redis pub/sub, "
            "serving /events/blob, /health/*, /metrics and /configs/{source_id}."
        ),
        epilog="Configured only through environment variables:\n" + _variables(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def check_mongo_uri(settings: MongoSettings) -> None:
    """Raise ConfigError if PyMongo refuses ``SCC_MONGODB_URI`` (no network I/O)."""

    async def probe() -> None:
        client = make_mongo(settings, appname=PROGRAM, connect=False)
        await client.close()

    try:
        asyncio.run(probe())
    except (PyMongoError, ValueError, TypeError) as e:
        raise ConfigError(f"SCC_MONGODB_URI: {e}") from e


def serve(settings: Settings) -> int:
    """Run uvicorn until it is told to stop; the process exit status."""
    failures: list[RootTaskFailed] = []
    servers: list[uvicorn.Server] = []

    def on_failure(error: RootTaskFailed) -> None:
        failures.append(error)
        for server in servers:
            server.should_exit = True

    app = create_app(settings=settings, on_failure=on_failure)
    config = server_config(
        app,
        settings.http,
        lifespan="on",
        log_config=None,  # keep the structlog set-up of configure_logging
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    servers.append(server)
    server.run()
    if failures:
        log.error("replica exits after a root task failure", error=str(failures[0]))
        return EXIT_FAILED
    if not server.started:
        log.error("replica did not start")
        return EXIT_FAILED
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``--help``, load settings (or exit 2 with one line), serve."""
    build_parser().parse_args(argv)
    settings = or_exit(PROGRAM, load_settings)
    or_exit(PROGRAM, lambda: check_mongo_uri(settings.mongo))
    configure_logging(fmt=settings.process.log_format, level=settings.process.log_level)
    settle_heap_after_first_load()
    log.info(
        "scc-service starting",
        version=__version__,
        instance_id=settings.process.instance_id,
        host=settings.http.host,
        port=settings.http.port,
    )
    raise SystemExit(serve(settings))


if __name__ == "__main__":
    main()
