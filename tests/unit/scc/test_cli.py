"""The command line itself: help texts, usage errors and configuration errors, no Redis."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO

import pytest
from rich.text import Text

from scc.__main__ import build_parser, main
from scc.commands import target, watch
from scc.errors import EXIT_PROBLEM, EXIT_UNAVAILABLE, RedisUnavailable


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SCC_* variable of the developer's shell leaks into these tests."""
    for name in ("SCC_REDIS_URL", "SCC_NAMESPACE", "SCC_HEARTBEAT_INTERVAL_MS",
                 "SCC_MAX_AWAIT_MS", "SCC_MESSAGE_HMAC_KEY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def test_inspect_help_explains_fields_marks_and_exit_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`scc inspect --help` documents each field, each mark's rule and the exit statuses."""
    text = help_of(capsys, "inspect")
    for word in ("lease time left", "resume token", "PUBSUB NUMSUB", "silent", "lagging",
                 "not-ready", "stalled", "no-leader", "subscribers", "exit status",
                 "--lag-tolerance", "--watch", "--json", "schema_version"):  # fmt: skip
        assert word in text, word


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["replicas"], ["cache size", "behind", "last message", "warmed at", "lagging"]),
        (["resync"], ["fenced", "next seq", "SCC_MESSAGE_HMAC_KEY", "--reason"]),
        (["token", "show"], ["cluster time", "epoch", "exit status"]),
        (["token", "reset"], ["--yes", "starts its change", "exit status"]),
        (["dlq"], ["reason", "--count"]),
        ([], ["inspect", "resync", "token", "replicas", "dlq", "SCC_REDIS_URL"]),
    ],
)
def test_every_command_has_help(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    """Every command's --help explains its fields and options."""
    text = help_of(capsys, *argv)
    for word in words:
        assert word in text, word
    assert "--redis-url" in text or not argv


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command or a bad option value is a usage error, exit status 2."""
    assert main(["explode"]) == 2
    assert main(["dlq", "--count", "0"]) == 2
    assert main(["inspect", "--json", "--watch"]) == 2
    assert "usage:" in capsys.readouterr().err


def test_bad_redis_url_setting_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed SCC_REDIS_URL fails with one line naming the variable, exit 2."""
    monkeypatch.setenv("SCC_REDIS_URL", "http://:hunter22@example:1")
    assert main(["inspect"]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("scc: configuration error: SCC_REDIS_URL:")
    assert err.count("\n") == 1 and "hunter22" not in err


def test_options_before_or_after_the_command_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connection options work before or after the sub-command (after wins), env below."""
    monkeypatch.setenv("SCC_NAMESPACE", "from-env")
    parser = build_parser()
    before = target(parser.parse_args(["--namespace", "a", "--timeout", "0.5", "token", "show"]))
    after = target(parser.parse_args(["--namespace", "a", "dlq", "--namespace", "b"]))
    neither = target(parser.parse_args(["dlq", "--redis-url", "redis://h:1/3"]))
    assert (before.keys.namespace, before.timeout) == ("a", 0.5)
    assert (after.keys.namespace, after.timeout) == ("b", 3.0)
    assert (neither.keys.namespace, neither.url) == ("from-env", "redis://h:1/3")


def test_bad_namespace_is_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A namespace with a space is refused in one line naming SCC_NAMESPACE."""
    assert main(["--namespace", "bad name", "token", "show"]) == EXIT_UNAVAILABLE
    assert capsys.readouterr().err.startswith("scc: configuration error: SCC_NAMESPACE:")


def frames(statuses: list[int | Exception]) -> Iterator[tuple[Text, int]]:
    for n, status in enumerate(statuses):
        if isinstance(status, Exception):
            raise status
        yield Text(f"frame {n}"), status


def test_watch_redraws_and_returns_the_last_status() -> None:
    """--watch draws `iterations` frames, sleeping the interval between them."""
    slept: list[float] = []
    produced = frames([0, 0, EXIT_PROBLEM])
    out = io.StringIO()
    status = watch(lambda: next(produced), out, interval=0.5, iterations=3, sleep=slept.append)
    assert status == EXIT_PROBLEM and slept == [0.5, 0.5]
    assert "frame 2" in out.getvalue()


def test_watch_shows_redis_errors_and_keeps_going() -> None:
    """A frame that cannot reach Redis shows its line (status 2) and the loop goes on."""
    down = RedisUnavailable("cannot reach Redis at redis://h (ConnectionError: refused)")
    calls = iter([down, None, down])
    drawn: list[int] = []

    def frame() -> tuple[Text, int]:
        drawn.append(1)
        failure = next(calls)
        if failure is not None:
            raise failure
        return Text("back"), 0

    out = io.StringIO()
    assert watch(frame, out, interval=1, iterations=3, sleep=lambda _: None) == EXIT_UNAVAILABLE
    assert len(drawn) == 3
    assert "scc: cannot reach Redis at redis://h" in out.getvalue()


def test_watch_stops_cleanly_on_ctrl_c() -> None:
    """Ctrl-C ends --watch with the status of the last frame drawn, no traceback."""
    produced = frames([EXIT_PROBLEM])

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    status = watch(lambda: next(produced), io.StringIO(), interval=1, iterations=None,
                   sleep=interrupt)  # fmt: skip
    assert status == EXIT_PROBLEM


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_pipe_ends_quietly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`scc ... | head` closing the pipe mid-output ends with status 0 and no traceback."""

    def printing(args: object, out: IO[str]) -> int:
        out.write("row\n" * 100)
        return 1

    monkeypatch.setattr("scc.__main__.dlq_command", printing)
    assert main(["dlq"], out=_ClosedPipe()) == 0
    assert capsys.readouterr().err == ""
