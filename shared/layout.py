"""Moving a deployment from the key layout before hash tags (``ns:seq``) to ``{ns}:seq``.

Why: :mod:`shared.keys` puts every name under the hash tag ``{ns}`` so that Redis Cluster
keeps a namespace in one slot. A deployment that ran before keeps its resume token, epoch,
seq, term and event streams under the old names; a new watcher that did not find them
would start from the current time (changes in between never published) and from seq 0.
``scc migrate-keys`` copies them (:func:`plan` then :func:`apply`); the watcher warns at
start when it finds only old-layout state (:func:`old_layout_only`).

What is copied: every durable key (:func:`shared.keys.durable_pairs`) and every
de-duplication key of the event store (with its remaining TTL). Not copied: the lease
``ns:leader`` (a running old watcher holds it: migration refuses while it exists) and the
heartbeat hashes (rewritten by running processes within seconds). Copies go through
``DUMP``/``RESTORE`` so every type (string, hash, stream) and its TTL carry over unchanged;
the old keys stay (a rollback still finds them) unless ``--delete-old`` is given.

Invariant: applying a plan twice changes nothing the second time (copied keys compare
equal); a new key that differs from its old twin is never overwritten without ``force``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shared.keys import Keys, LegacyKeys, durable_pairs

Action = Literal["copy", "same", "conflict"]


@dataclass(frozen=True, slots=True)
class Step:
    """One old-layout key and what migrating it means."""

    old: str
    new: str
    action: Action


def _names(client: Any, keys: Keys) -> list[tuple[str, str]]:
    pairs = durable_pairs(keys)
    old, prefix_old = LegacyKeys(keys.namespace), LegacyKeys(keys.namespace).prefix
    for raw in client.scan_iter(match=old.event_seen_pattern, count=500):
        name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        pairs.append((name, keys.prefix + name[len(prefix_old) :]))
    return pairs


def plan(client: Any, keys: Keys) -> list[Step]:
    """Every old-layout key present and what to do with it (reads only)."""
    steps: list[Step] = []
    for old, new in _names(client, keys):
        old_dump = client.dump(old)
        if old_dump is None:
            continue
        new_dump = client.dump(new)
        if new_dump is None:
            steps.append(Step(old, new, "copy"))
        else:
            steps.append(Step(old, new, "same" if new_dump == old_dump else "conflict"))
    return steps


def old_lease(client: Any, keys: Keys) -> str | None:
    """The instance id holding the old-layout lease ``ns:leader`` (a running old watcher)."""
    raw = client.get(LegacyKeys(keys.namespace).leader)
    if raw is None:
        return None
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def apply(client: Any, steps: list[Step], *, force: bool, delete_old: bool) -> list[str]:
    """Carry out ``steps``; one line per key saying what was done.

    ``copy`` restores the old key's dump (and TTL) under the new name; ``conflict`` is
    skipped unless ``force`` (then the old value replaces the new); with ``delete_old``
    the old key is deleted once the new one holds its value.
    """
    done: list[str] = []
    for step in steps:
        if step.action == "conflict" and not force:
            done.append(f"kept {step.new} (differs from {step.old}; --force replaces it)")
            continue
        if step.action in ("copy", "conflict"):
            dump, ttl = client.dump(step.old), int(client.pttl(step.old))
            if dump is None or ttl == -2:  # expired meanwhile (a de-duplication key)
                done.append(f"gone {step.old} (expired before it was copied)")
                continue
            client.restore(step.new, max(ttl, 0), dump, replace=True)
            done.append(f"copied {step.old} -> {step.new}")
        else:
            done.append(f"same {step.old} = {step.new}")
        if delete_old:
            client.delete(step.old)
            done.append(f"deleted {step.old}")
    return done


def describe(step: Step) -> str:
    """What a dry run prints for ``step``."""
    if step.action == "copy":
        return f"would copy {step.old} -> {step.new}"
    if step.action == "same":
        return f"already {step.old} = {step.new}"
    return f"conflict {step.old} != {step.new}"


async def old_layout_only(redis: Any, keys: Keys) -> list[str]:
    """The old-layout durable keys present when none of the new layout exists (else [])."""
    pairs = durable_pairs(keys)[:4]  # epoch, seq, term, resume: what a leader starts from
    if int(await redis.exists(*[new for _, new in pairs])):
        return []
    found = []
    for old, _ in pairs:  # one EXISTS each: old names live in different cluster slots
        if int(await redis.exists(old)):
            found.append(old)
    return found
