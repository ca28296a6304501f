"""Diagnostic and test commands: getCmdLineOpts, serverStatus, getParameter, configureFailPoint.

Why: a driver's test harness (PyMongo's ``client_context``) decides what to run from these
answers, so they must describe the double truthfully: a mongod started as the only member
of a replica set with ``--setParameter enableTestCommands=1`` (``configureFailPoint`` works),
without ``--auth``, TLS or IPv6, keeping its data in memory. Only parameters the double
actually honours are reported; asking for any other one by name is refused as mongod
refuses a parameter it does not have.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bson.int64 import Int64

from .admin import build_info
from .errors import CommandError
from .state import Context, command

_STARTED = time.monotonic()


def _parameters(ctx: Context) -> dict[str, Any]:
    return {
        "enableTestCommands": True,
        "authenticationMechanisms": [],  # authentication is not emulated
        "featureCompatibilityVersion": {"version": "7.0"},
        "requireApiVersion": False,
        "periodicNoopIntervalSecs": int(ctx.state.config.noop_interval),
        "localLogicalSessionTimeoutMinutes": 30,
    }


@command("getCmdLineOpts")
async def get_cmd_line_opts(ctx: Context) -> dict[str, Any]:
    config = ctx.state.config
    return {
        "argv": [
            "mongod",
            "--replSet",
            config.set_name,
            "--bind_ip",
            config.host,
            "--port",
            str(config.port),
            "--storageEngine",
            "inMemory",
            "--setParameter",
            "enableTestCommands=1",
        ],
        "parsed": {
            "net": {"bindIp": config.host, "port": config.port},
            "replication": {"replSet": config.set_name},
            "setParameter": {"enableTestCommands": "1"},
            "storage": {"engine": "inMemory"},
        },
        "ok": 1.0,
    }


@command("serverStatus")
async def server_status(ctx: Context) -> dict[str, Any]:
    info = await build_info(ctx)
    uptime = time.monotonic() - _STARTED
    return {
        "host": ctx.state.config.address,
        "version": info["version"],
        "process": "mongod",
        "pid": Int64(os.getpid()),
        "uptime": float(int(uptime)),
        "uptimeMillis": Int64(int(uptime * 1000)),
        "uptimeEstimate": Int64(int(uptime)),
        "connections": {
            "current": len(ctx.state.connections),
            "available": 1_000_000 - len(ctx.state.connections),
            "totalCreated": ctx.state.next_connection_id - 1,
        },
        "storageEngine": {
            "name": "inMemory",
            "supportsCommittedReads": True,
            "persistent": False,
        },
        "repl": {
            "setName": ctx.state.config.set_name,
            "isWritablePrimary": True,
            "secondary": False,
            "primary": ctx.state.config.address,
            "me": ctx.state.config.address,
        },
        "ok": 1.0,
    }


@command("getParameter")
async def get_parameter(ctx: Context) -> dict[str, Any]:
    spec = ctx.command["getParameter"]
    known = _parameters(ctx)
    every = spec == "*" or (isinstance(spec, dict) and bool(spec.get("allParameters")))
    if every:
        return {**known, "ok": 1.0}
    names = [k for k in ctx.command if k not in ("getParameter", "$db", "lsid", "$clusterTime")]
    names = [k for k in names if not k.startswith("$")]
    found = {name: known[name] for name in names if name in known}
    if not found:
        raise CommandError(72, "no option found to get")
    return {**found, "ok": 1.0}


@command("configureFailPoint")
async def configure_fail_point(ctx: Context) -> dict[str, Any]:
    if ctx.db != "admin":
        raise CommandError(13, "configureFailPoint may only be run against the admin database.")
    if "mode" not in ctx.command:
        raise CommandError(40414, "BSON field 'configureFailPoint.mode' is missing")
    name = ctx.command["configureFailPoint"]
    count = ctx.state.faults.points.configure(name, ctx.command["mode"], ctx.command.get("data"))
    return {"count": Int64(count), "ok": 1.0}
