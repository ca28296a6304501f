"""deploy/seed: realistic example configs, and a seeding script that is safe to run again.

The example file is what ``docker compose up`` and the local demo start from, so it must
parse as MongoDB extended JSON and exercise the matching rules (a disabled config, two
configs sharing a landing container with different patterns). The script is run against
the MongoDB wire double through the real PyMongo driver, twice, to pin its idempotence.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from tests.deploy.support import REPO

SEED_DIR = REPO / "deploy" / "seed"
SEED_FILE = SEED_DIR / "source_configs.json"


def _load_seed_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scc_deploy_seed", SEED_DIR / "seed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


seed_module = _load_seed_module()


def test_example_configs_parse_as_extended_json_with_unique_ids() -> None:
    """A dozen configs, unique string source_ids, real datetimes, the documented fields."""
    configs = seed_module.load_configs(SEED_FILE)
    assert len(configs) == 12
    ids = [c["source_id"] for c in configs]
    assert len(set(ids)) == len(ids)
    for config in configs:
        assert set(config) == {"source_id", "enabled", "ingestion", "owner", "updated_at"}
        assert isinstance(config["enabled"], bool)
        assert isinstance(config["updated_at"], dt.datetime)
        ingestion = config["ingestion"]
        assert set(ingestion) <= {"landing_container", "path_pattern", "format"}
        assert ingestion["landing_container"] and ingestion["format"]
        assert isinstance(ingestion.get("path_pattern", ""), str)


def test_examples_cover_the_matching_rules() -> None:
    """One config is disabled, one has no pattern, and two share a container by pattern."""
    configs = seed_module.load_configs(SEED_FILE)
    assert [c["source_id"] for c in configs if not c["enabled"]] == ["legacy-ftp-inventory"]
    assert [c for c in configs if "path_pattern" not in c["ingestion"]]
    containers = Counter(c["ingestion"]["landing_container"] for c in configs)
    (shared,) = [name for name, count in containers.items() if count > 1]
    patterns = {
        c["ingestion"]["path_pattern"]
        for c in configs
        if c["ingestion"]["landing_container"] == shared
    }
    assert len(patterns) == 2


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('[{"source_id": "a"}, {"source_id": "a"}]', "'a' appears twice"),
        ('[{"source_id": 7}]', "no string 'source_id'"),
        ('{"source_id": "a"}', "expected a JSON array"),
        ('[{"source_id": "a", "_id": 1}]', "must not set _id"),
        ('[{"source_id": "a",', "cannot read seed file"),
    ],
)
def test_bad_seed_files_are_refused_with_the_reason(
    tmp_path: Path, content: str, problem: str
) -> None:
    """A duplicate or missing key, a non-array, an _id or broken JSON names the problem."""
    path = tmp_path / "configs.json"
    path.write_text(content)
    with pytest.raises(seed_module.SeedError, match=problem):
        seed_module.load_configs(path)


def test_missing_uri_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without SCC_MONGODB_URI or --uri the script exits 2 with one line naming the variable."""
    monkeypatch.delenv("SCC_MONGODB_URI", raising=False)
    with pytest.raises(SystemExit) as exited:
        seed_module.main([])
    assert exited.value.code == 2
    assert "SCC_MONGODB_URI is required" in capsys.readouterr().err


def test_unreachable_mongodb_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A MongoDB that cannot be reached gives exit status 1 and a one-line reason."""
    status = seed_module.main(
        ["--uri", "mongodb://127.0.0.1:1/?directConnection=true", "--timeout-s", "0.2"]
    )
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seed: error: MongoDB refused seeding")


def _snapshot(uri: str) -> dict[str, dict[str, object]]:
    with MongoClient(uri, serverSelectionTimeoutMS=5_000) as client:
        collection = client["ingestion"]["source_configs"]
        return {doc["source_id"]: doc for doc in collection.find({})}


@pytest.mark.integration
def test_seeding_twice_equals_seeding_once(
    mongo_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second run inserts and rewrites nothing: same documents, same _ids, 12 unchanged."""
    assert seed_module.main(["--uri", mongo_uri, "--timeout-s", "5"]) == 0
    assert "12 inserted, 0 updated, 0 unchanged" in capsys.readouterr().out
    first = _snapshot(mongo_uri)
    assert seed_module.main(["--uri", mongo_uri, "--timeout-s", "5"]) == 0
    assert "0 inserted, 0 updated, 12 unchanged" in capsys.readouterr().out
    assert _snapshot(mongo_uri) == first
    expected = {c["source_id"]: c for c in seed_module.load_configs(SEED_FILE)}
    assert {k: {f: v for f, v in d.items() if f != "_id"} for k, d in first.items()} == expected


@pytest.mark.integration
def test_seeding_restores_edited_examples_and_keeps_other_configs(mongo_uri: str) -> None:
    """A changed example is put back, a config not in the file is untouched, keys stay unique."""
    configs = seed_module.load_configs(SEED_FILE)
    with MongoClient(mongo_uri, serverSelectionTimeoutMS=5_000) as client:
        collection = client["ingestion"]["source_configs"]
        assert seed_module.seed(collection, configs) == seed_module.SeedResult(12, 0, 0)
        collection.update_one({"source_id": "web-clickstream"}, {"$set": {"enabled": False}})
        collection.insert_one({"source_id": "operator-added", "enabled": True})
        assert seed_module.seed(collection, configs) == seed_module.SeedResult(0, 1, 11)
        assert collection.find_one({"source_id": "web-clickstream"})["enabled"] is True
        assert collection.count_documents({}) == 13
        with pytest.raises(DuplicateKeyError):
            collection.insert_one({"source_id": "operator-added"})
