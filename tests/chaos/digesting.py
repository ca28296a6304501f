"""The end-of-scenario verdict: does each replica's cache equal the collection, exactly?

Why it exists: "no divergence" is the one invariant every scenario shares, and it must be
checked the same way everywhere and explained when it fails. The truth is the collection
read through PyMongo at the end; a replica's view is read over HTTP.

How a replica's view is read (the service exposes no endpoint that lists its cache):

1. ``/health/cache`` gives ``cache_size``;
2. ``GET /configs/{key}`` for every key of the collection, with ``/metrics`` scraped before
   and after: ``scc_replica_store_reads_total`` must not move, because a key missing from
   the cache is answered by reading MongoDB (a read-through would otherwise hide it);
3. ``cache_size`` equal to the collection's count, plus every key found in the cache,
   means the cache holds exactly those keys; each answer is compared byte for byte in
   canonical form (relaxed extended JSON, sorted keys);
4. ``GET /configs/{key}`` for every key ever written or forged that is not in the
   collection must answer 404.

The digest is SHA-256 over ``key NUL canonical-document LF`` in key order; it is printed
per replica, and a mismatch prints the diff (missing, extra and differing keys with both
versions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson
from pymongo.collection import Collection

from shared.messages import to_ejson
from tests.chaos.configs import key_of
from tests.chaos.probing import cache_health, scrape

_SHOWN: Final = 8
_CLIP: Final = 400


def canonical(doc: Mapping[str, Any]) -> str:
    """A document as relaxed extended JSON with sorted keys (what replicas answer with)."""
    return orjson.dumps(to_ejson(dict(doc)), option=orjson.OPT_SORT_KEYS).decode()


def canonical_json(body: bytes) -> str:
    """An answer of ``GET /configs/{key}`` in the same canonical form."""
    return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS).decode()


def digest_of(entries: Mapping[str, str]) -> str:
    """SHA-256 over the entries in key order (see the module docstring)."""
    h = hashlib.sha256()
    for key in sorted(entries):
        h.update(key.encode() + b"\0" + entries[key].encode() + b"\n")
    return h.hexdigest()


def read_collection(
    coll: Collection[dict[str, Any]], key_field: str
) -> tuple[dict[str, str], list[str]]:
    """``{key: canonical doc}`` of the collection, and problems (duplicate or missing keys)."""
    out: dict[str, str] = {}
    problems: list[str] = []
    for doc in coll.find({}):
        key = key_of(doc, key_field)
        if not isinstance(key, str) or not key:
            problems.append(f"document {doc.get('_id')!r} has no string {key_field}")
        elif key in out:
            problems.append(f"two documents share {key_field} {key!r}")
        else:
            try:
                out[key] = canonical(doc)
            except (TypeError, ValueError) as e:  # a value the codec cannot carry
                problems.append(f"document {key!r} has no extended-JSON form: {e!r:.200}")
    return out, problems


@dataclass
class ReplicaDigest:
    """One replica's view compared with the collection."""

    replica: str
    expected_digest: str
    digest: str = ""
    size: int | None = None
    expected_size: int = 0
    missing: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    differ: dict[str, tuple[str, str]] = field(default_factory=dict)
    read_through: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """True when the cache holds exactly the collection."""
        return not (
            self.missing
            or self.extra
            or self.differ
            or self.read_through
            or self.errors
            or self.size != self.expected_size
        )

    def describe(self) -> str:
        """A multi-line diff for the failure report."""
        lines = [
            f"replica {self.replica}: digest {self.digest[:16]} != collection "
            f"{self.expected_digest[:16]}; cache_size {self.size}, collection {self.expected_size}"
        ]
        if self.read_through:
            lines.append(
                f"  {self.read_through} of the collection's keys were not in the cache "
                "(answered by reading MongoDB)"
            )
        for key in self.missing[:_SHOWN]:
            lines.append(f"  missing  {key}")
        for key, body in list(self.extra.items())[:_SHOWN]:
            lines.append(f"  extra    {key}: {body[:_CLIP]}")
        for key, (want, got) in list(self.differ.items())[:_SHOWN]:
            lines.append(
                f"  differs  {key}\n    collection: {want[:_CLIP]}\n    replica:    {got[:_CLIP]}"
            )
        hidden = len(self.missing) + len(self.extra) + len(self.differ) - 3 * _SHOWN
        if hidden > 0:
            lines.append(f"  ... and up to {hidden} more")
        lines.extend(f"  error    {e}" for e in self.errors[:_SHOWN])
        return "\n".join(lines)


def compare_replica(
    client: httpx.Client,
    name: str,
    base_url: str,
    expected: Mapping[str, str],
    absent_keys: Iterable[str],
) -> ReplicaDigest:
    """Read one replica's view (module docstring, steps 1-4) and compare it."""
    result = ReplicaDigest(name, digest_of(expected), expected_size=len(expected))
    health = cache_health(client, base_url)
    if health is None:
        result.errors.append("/health/cache did not answer 200")
        return result
    result.size = health.get("cache_size")
    try:
        before = scrape(client, base_url)
        seen: dict[str, str] = {}
        for key in sorted(expected):
            response = client.get(f"{base_url}/configs/{key}")
            if response.status_code == 200:
                seen[key] = got = canonical_json(response.content)
                if got != expected[key]:
                    result.differ[key] = (expected[key], got)
            elif response.status_code == 404:
                result.missing.append(key)
            else:
                result.errors.append(
                    f"GET /configs/{key}: {response.status_code} {response.text[:200]}"
                )
        after = scrape(client, base_url)
        reads = "scc_replica_store_reads_total"
        result.read_through = int(after.total(reads) - before.total(reads))
        for key in sorted(set(absent_keys) - set(expected)):
            response = client.get(f"{base_url}/configs/{key}")
            if response.status_code == 200:
                seen[key] = result.extra[key] = canonical_json(response.content)
            elif response.status_code != 404:
                result.errors.append(
                    f"GET /configs/{key}: {response.status_code} {response.text[:200]}"
                )
    except httpx.HTTPError as e:
        result.errors.append(f"replica stopped answering: {e!r}")
    result.digest = digest_of(seen)
    return result
