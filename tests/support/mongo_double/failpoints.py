"""Fail points as mongod implements them: ``configureFailPoint`` and where each one fires.

Why: PyMongo's own tests, and the contract tests, inject server faults the way every MongoDB
driver test does: ``configureFailPoint`` (test commands enabled). The double keeps mongod's
rules so a test that passes here means the same as on a real server:

* modes ``off``, ``alwaysOn``, ``{times: n}``, ``{skip: n}``, ``{activationProbability: p}``;
  the predicate (command name, ``appName``, ``namespace``) is checked *before* a mode counts
  an activation, and ``count`` in the reply is how often the point fired so far;
* ``failCommand`` fires before the command runs: ``blockConnection``/``blockTimeMS``, then
  ``closeConnection`` (a hang-up) or ``errorCode`` ("Failing command via 'failCommand'
  failpoint"), or, after the command ran, ``writeConcernError``. An ``errorLabels`` array
  replaces the labels the server would attach (an empty one means none). Because it fires
  before a getMore checks its cursor out, an injected getMore error gets no
  ``ResumableChangeStreamError`` label; an aggregate's own ``$changeStream`` pipeline does;
* ``failGetMoreAfterCursorCheckout`` fires inside getMore once the cursor is known
  (``errorCode``, default 1 InternalError), so it gets the labels the server adds, and the
  failed getMore kills its cursor.

A fail point mongod has but the double does not emulate answers like an unknown one
(266 FailPointSetFailed "<name> not found"), never with a fake success. The ``doubleFault``
``failCommands`` hook builds the same :class:`FailPoint` objects (anonymous ones, labelled
as after cursor checkout, and bumping ``topologyVersion`` for a step-down code).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .errors import CommandError, bad_value

FAIL_COMMAND = "failCommand"
FAIL_GET_MORE = "failGetMoreAfterCursorCheckout"
KNOWN_POINTS = (FAIL_COMMAND, FAIL_GET_MORE)
# Commands a failCommand point never fails, even when named (mongod bans configureFailPoint).
NEVER_FAILED = frozenset({"configureFailPoint", "doubleFault"})


@dataclass(slots=True)
class FailPoint:
    """One fail point: its mode, its data and how often it fired."""

    name: str
    mode: str = "off"  # off | alwaysOn | times | skip | random
    value: float = 0  # activations left (times), skips left (skip), probability (random)
    data: dict[str, Any] = field(default_factory=dict)
    entered: int = 0
    # doubleFault rules: errors carry the labels a server adds once it knows the cursor, and a
    # step-down code bumps topologyVersion (a real state change); failCommand does neither.
    after_checkout: bool = False
    bump_topology: bool = False

    def configure(self, mode: Any, data: Any) -> int:
        """Set mode and data as ``configureFailPoint`` does; return the previous ``count``."""
        kind, value = _parse_mode(mode)
        if data is not None and not isinstance(data, dict):
            raise CommandError(14, "'data' must be an object")
        self.mode, self.value, self.data = kind, value, dict(data or {})
        return self.entered

    def fires(self, applies: bool) -> bool:
        """Count one evaluation whose predicate gave ``applies``; True when the point fires."""
        if self.mode == "off" or not applies:
            return False
        if self.mode == "times":
            self.value -= 1
            if self.value <= 0:
                self.mode = "off"
        elif self.mode == "skip":
            if self.value > 0:
                self.value -= 1
                return False
        elif self.mode == "random" and random.random() >= self.value:
            return False
        self.entered += 1
        return True

    def applies_to(self, command: str, app_name: str | None, ns: str | None) -> bool:
        """mongod's ``shouldActivateFailCommandFailPoint`` for an external client."""
        data = self.data
        if command in NEVER_FAILED:
            return False
        if "appName" in data and data["appName"] != (app_name or ""):
            return False
        if "namespace" in data and data["namespace"] != ns:
            return False
        if data.get("failAllCommands"):
            return True
        names = data.get("failCommands")
        return isinstance(names, list) and command in names


def _parse_mode(mode: Any) -> tuple[str, float]:
    if mode == "off" or mode == "alwaysOn":
        return str(mode), 0
    if isinstance(mode, dict) and len(mode) == 1:
        ((key, value),) = mode.items()
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if key in ("times", "skip"):
            if number is None or number < 0 or int(number) != number:
                raise bad_value(f"'{key}' option to 'mode' must be a non-negative integer")
            if key == "times" and number == 0:
                return "off", 0
            return key, int(number)
        if key == "activationProbability":
            if number is None or not 0 <= number <= 1:
                raise bad_value("'activationProbability' option to 'mode' must be in [0, 1]")
            return "random", float(number)
    raise bad_value(
        "'mode' must be one of 'off', 'alwaysOn', {times: n}, {skip: n} or "
        f"{{activationProbability: p}}, got {mode!r}"
    )


class FailPoints:
    """The named fail points of this server plus the anonymous ``doubleFault`` rules."""

    def __init__(self) -> None:
        self.named = {name: FailPoint(name) for name in KNOWN_POINTS}
        self.rules: list[FailPoint] = []

    def configure(self, name: Any, mode: Any, data: Any) -> int:
        point = self.named.get(name) if isinstance(name, str) else None
        if point is None:
            raise CommandError(266, f"{name} not found", code_name_="FailPointSetFailed")
        return point.configure(mode, data)

    def before_command(self, command: str, app_name: str | None, ns: str | None) -> list[FailPoint]:
        """The points that fire for this command before it runs (doubleFault rules first)."""
        fired: list[FailPoint] = []
        for rule in list(self.rules):
            if rule.fires(rule.applies_to(command, app_name, ns)):
                fired.append(rule)
                if rule.mode == "off":
                    self.rules.remove(rule)
                break
        point = self.named[FAIL_COMMAND]
        if not fired and point.mode != "off":
            data = point.data
            acts = any(data.get(k) for k in ("closeConnection", "blockConnection")) or (
                "errorCode" in data or "writeConcernError" in data
            )
            if point.fires(acts and point.applies_to(command, app_name, ns)):
                fired.append(point)
        return fired

    def after_checkout(self, app_name: str | None, ns: str | None) -> FailPoint | None:
        """``failGetMoreAfterCursorCheckout``, evaluated inside getMore."""
        point = self.named[FAIL_GET_MORE]
        if point.mode == "off":
            return None
        scoped = FailPoint(point.name, data={**point.data, "failCommands": ["getMore"]})
        return point if point.fires(scoped.applies_to("getMore", app_name, ns)) else None

    def clear(self) -> None:
        self.rules.clear()
        for point in self.named.values():
            point.mode, point.value, point.data = "off", 0, {}


def double_fault_rule(
    commands: list[str],
    *,
    times: int,
    code: int,
    code_name: str | None = None,
    errmsg: str | None = None,
    labels: list[str] | None = None,
    close_connection: bool = False,
) -> FailPoint:
    """The fail point behind ``doubleFault: "failCommands"`` (and ``fail_commands()``).

    Unlike ``failCommand`` it may set ``codeName``/``errmsg``, its errors get the labels the
    server adds once it knows a getMore's cursor (``labels`` None), and a step-down code also
    bumps ``topologyVersion`` as a real state change does.
    """
    if not commands or times < 1:
        raise bad_value("failCommands needs at least one command name and times >= 1")
    data: dict[str, Any] = {"failCommands": list(commands), "errorCode": int(code)}
    if close_connection:
        data["closeConnection"] = True
    if labels is not None:
        data["errorLabels"] = list(labels)
    if code_name is not None:
        data["codeName"] = code_name
    if errmsg is not None:
        data["errmsg"] = errmsg
    return FailPoint(
        "doubleFault",
        mode="times",
        value=times,
        data=data,
        after_checkout=True,
        bump_topology=True,
    )
