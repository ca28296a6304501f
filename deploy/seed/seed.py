#!/usr/bin/env python3
"""Seed the ``source_configs`` collection with example configs; safe to run any number of times.

``docker compose up``, ``make demo`` and a fresh cluster all need a handful of realistic
configs before the system has anything to cache. This script exists so that they all
load the same file (``source_configs.json`` beside it, MongoDB extended JSON) the same
way.

Invariant: running it twice leaves the collection exactly as running it once. Each
document is upserted by its key field (``source_id``) with ``$set``: a missing config is
inserted, a changed one is put back to the file's version, an unchanged one is not
written at all (MongoDB reports it unmodified, so no change event and no invalidation is
caused), ``_id`` values survive, and configs that are not in the file are left alone.

Usage::

    python deploy/seed/seed.py [--file PATH] [--uri URI] [--database DB] [--collection C]

Defaults come from the same variables the services read: ``SCC_MONGODB_URI``
(required unless ``--uri``), ``SCC_MONGODB_DATABASE`` (``ingestion``),
``SCC_MONGODB_COLLECTION`` (``source_configs``), ``SCC_KEY_FIELD`` (``source_id``).
Exit status: 0 seeded, 1 failed (one line on stderr says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bson import json_util
from bson.errors import BSONError
from pymongo import ASCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.errors import PyMongoError
from pymongo.write_concern import WriteConcern

DEFAULT_FILE = Path(__file__).with_name("source_configs.json")


class SeedError(Exception):
    """The seed file or the database refused the seed; ``str()`` is the one-line reason."""


@dataclass(frozen=True, slots=True)
class SeedResult:
    """What one run did, per document."""

    inserted: int
    updated: int
    unchanged: int


def load_configs(path: Path, *, key_field: str = "source_id") -> list[dict[str, Any]]:
    """Parse ``path`` (a JSON array of extended-JSON documents) and check every key is unique.

    Raises :class:`SeedError` naming the file and the first problem found.
    """
    try:
        parsed: Any = json_util.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, BSONError) as e:
        raise SeedError(f"{path}: cannot read seed file: {e}") from e
    if not isinstance(parsed, list):
        raise SeedError(f"{path}: expected a JSON array of documents")
    seen: set[str] = set()
    configs: list[dict[str, Any]] = []
    for index, doc in enumerate(parsed):
        if not isinstance(doc, dict):
            raise SeedError(f"{path}: item {index} is not an object")
        key = doc.get(key_field)
        if not isinstance(key, str) or not key:
            raise SeedError(f"{path}: item {index} has no string {key_field!r}")
        if key in seen:
            raise SeedError(f"{path}: {key_field} {key!r} appears twice")
        if "_id" in doc:
            raise SeedError(f"{path}: item {index} ({key}) must not set _id")
        seen.add(key)
        configs.append(doc)
    return configs


def seed(
    collection: Collection[Mapping[str, Any]],
    configs: Sequence[Mapping[str, Any]],
    *,
    key_field: str = "source_id",
    create_index: bool = True,
) -> SeedResult:
    """Upsert every config by ``key_field`` (majority write concern); see the module invariant.

    With ``create_index`` a unique index on ``key_field`` is ensured first (a no-op when it
    exists), so a second writer cannot create a duplicate key behind the seed's back.
    """
    majority = collection.with_options(write_concern=WriteConcern("majority"))
    if create_index:
        majority.create_index([(key_field, ASCENDING)], unique=True, name=f"{key_field}_unique")
    inserted = updated = unchanged = 0
    for doc in configs:
        fields = {name: value for name, value in doc.items() if name != key_field}
        result = majority.update_one({key_field: doc[key_field]}, {"$set": fields}, upsert=True)
        if result.upserted_id is not None:
            inserted += 1
        elif result.modified_count:
            updated += 1
        else:
            unchanged += 1
    return SeedResult(inserted=inserted, updated=updated, unchanged=unchanged)


def _parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="seed.py",
        description="Upsert the example source configs into MongoDB (idempotent).",
    )
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="extended-JSON array")
    parser.add_argument(
        "--uri", default=env.get("SCC_MONGODB_URI"), help="default: $SCC_MONGODB_URI"
    )
    parser.add_argument(
        "--database",
        default=env.get("SCC_MONGODB_DATABASE", "ingestion"),
        help="default: $SCC_MONGODB_DATABASE or ingestion",
    )
    parser.add_argument(
        "--collection",
        default=env.get("SCC_MONGODB_COLLECTION", "source_configs"),
        help="default: $SCC_MONGODB_COLLECTION or source_configs",
    )
    parser.add_argument(
        "--key-field",
        default=env.get("SCC_KEY_FIELD", "source_id"),
        help="default: $SCC_KEY_FIELD or source_id",
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=30.0,
        help="how long to wait for a writable primary (default: 30)",
    )
    parser.add_argument(
        "--no-index", action="store_true", help="do not ensure the unique key index"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse arguments, seed, print one summary line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.uri:
        parser.error("SCC_MONGODB_URI is required but not set (or pass --uri)")
    timeout_ms = int(args.timeout_s * 1000)
    target = f"{args.database}.{args.collection}"
    try:
        configs = load_configs(args.file, key_field=args.key_field)
        client: MongoClient[Mapping[str, Any]] = MongoClient(
            args.uri,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=min(timeout_ms, 10_000),
            appname="scc-seed",
        )
        try:
            collection = client[args.database][args.collection]
            result = seed(
                collection, configs, key_field=args.key_field, create_index=not args.no_index
            )
        finally:
            client.close()
    except SeedError as e:
        print(f"seed: error: {e}", file=sys.stderr)
        return 1
    except PyMongoError as e:
        print(f"seed: error: MongoDB refused seeding {target}: {e}", file=sys.stderr)
        return 1
    print(
        f"seed: {target}: {result.inserted} inserted, {result.updated} updated, "
        f"{result.unchanged} unchanged (from {args.file.name})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
