"""Tests of appliance.logs: one line per record, JSON fields at the top level."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from appliance import logs
from appliance.config import Secret


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    logger = logging.getLogger("appliance")
    handlers, level = list(logger.handlers), logger.level
    yield
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines(stream)]


def test_text_format() -> None:
    stream = io.StringIO()
    logs.setup(stream=stream)
    logging.getLogger("appliance.daemon").info("connected to %s", "wss://x")
    logging.getLogger("appliance.daemon").debug("not shown at INFO")
    assert lines(stream) == ["INFO appliance.daemon: connected to wss://x"]


def test_setup_touches_only_the_appliance_logger() -> None:
    root_handlers = list(logging.getLogger().handlers)
    stream = io.StringIO()
    logs.setup(stream=stream)
    logging.getLogger("websockets.client").warning("not ours")
    assert logging.getLogger().handlers == root_handlers
    assert stream.getvalue() == ""


def test_setup_again_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.setup(stream=first)
    logs.setup(log_format="json", level=logging.DEBUG, stream=second)
    logging.getLogger("appliance.x").debug("once")
    assert first.getvalue() == ""
    assert [line["msg"] for line in json_lines(second)] == ["once"]
    installed = [h for h in logging.getLogger("appliance").handlers if h.stream is second]  # type: ignore[attr-defined]
    assert len(installed) == 1


def test_setup_keeps_handlers_it_did_not_install() -> None:
    other = logging.StreamHandler(io.StringIO())
    logger = logging.getLogger("appliance")
    logger.addHandler(other)
    try:
        logs.setup(stream=io.StringIO())
        logs.setup(stream=io.StringIO())
        assert other in logger.handlers
    finally:
        logger.removeHandler(other)


def test_stream_defaults_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup()
    logging.getLogger("appliance").warning("to stderr")
    captured = capsys.readouterr()
    assert captured.err == "WARNING appliance: to stderr\n"
    assert captured.out == ""


def test_text_is_one_line_per_record() -> None:
    stream = io.StringIO()
    logs.setup(stream=stream)
    logger = logging.getLogger("appliance.t")
    logger.info("first\nsecond\r\nthird\x1b[31m\u2028end\ttab")
    try:
        raise ValueError("boom\nbang")
    except ValueError:
        logger.exception("crashed")
    first, second = lines(stream)
    assert first == "INFO appliance.t: first\\nsecond\\r\\nthird\\x1b[31m\\u2028end\ttab"
    assert second.startswith("ERROR appliance.t: crashed\\nTraceback (most recent call last):\\n")
    assert second.endswith("ValueError: boom\\nbang")


def test_event_in_text_shows_just_the_message() -> None:
    stream = io.StringIO()
    logs.setup(stream=stream)
    logger = logging.getLogger("appliance.daemon")
    logs.log_event(logger, logging.INFO, "session.ready", "session %s ready", "s1", connect_ms=12)
    assert lines(stream) == ["INFO appliance.daemon: session s1 ready"]


def test_json_lines() -> None:
    stream = io.StringIO()
    logs.setup(log_format="json", stream=stream)
    logger = logging.getLogger("appliance.daemon")
    logger.info("plain %d", 1)
    logs.log_event(
        logger,
        logging.INFO,
        "turn.done",
        "turn %d %s",
        3,
        "replied",
        turn=3,
        outcome="too_short",
        audio_in_ms=120.5,
        commit_to_first_audio_ms=None,
        release_to_commit_ms=float("nan"),
        key=Secret("sk-secret"),
        msg="a field named msg",
    )
    plain, event = json_lines(stream)
    assert set(plain) == {"ts", "level", "logger", "msg"}
    assert plain["msg"] == "plain 1"
    assert plain["level"] == "INFO"
    assert plain["logger"] == "appliance.daemon"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(plain["ts"]))
    assert event == {
        "ts": event["ts"],
        "level": "INFO",
        "logger": "appliance.daemon",
        "msg": "turn 3 replied",
        "event": "turn.done",
        "turn": 3,
        "outcome": "too_short",
        "audio_in_ms": 120.5,
        "commit_to_first_audio_ms": None,
        "release_to_commit_ms": None,
        "key": "********",
        "field_msg": "a field named msg",
    }
    assert '"commit_to_first_audio_ms": null' in lines(stream)[1]
    assert "sk-secret" not in stream.getvalue()


def test_json_is_one_line_per_record_with_exceptions() -> None:
    stream = io.StringIO()
    logs.setup(log_format="json", stream=stream)
    logger = logging.getLogger("appliance.x")
    try:
        raise RuntimeError("multi\nline")
    except RuntimeError:
        logs.log_event(logger, logging.ERROR, "session.lost", "lost\n%s", "it", exc_info=True)
    (line,) = json_lines(stream)
    assert line["msg"] == "lost\nit"
    assert line["event"] == "session.lost"
    assert str(line["exc"]).startswith("Traceback (most recent call last):\n")
    assert str(line["exc"]).endswith("RuntimeError: multi\nline")
    assert "exc_info" not in line


def test_log_event_reports_the_callers_location() -> None:
    records: list[logging.LogRecord] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Recorder()
    logger = logging.getLogger("appliance.located")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logs.log_event(logger, logging.DEBUG, "e", "m", a=1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    (record,) = records
    assert record.funcName == "test_log_event_reports_the_callers_location"
    assert logs.event_of(record) == ("e", {"a": 1})


def test_log_event_below_the_level_logs_nothing() -> None:
    stream = io.StringIO()
    logs.setup(stream=stream, level=logging.WARNING)
    logs.log_event(logging.getLogger("appliance.x"), logging.INFO, "e", "m", a=1)
    assert stream.getvalue() == ""


def test_event_of_a_plain_record_is_none() -> None:
    record = logging.LogRecord("appliance", logging.INFO, __file__, 1, "m", None, None)
    assert logs.event_of(record) is None


def test_one_line_leaves_tabs_and_text_alone() -> None:
    assert logs.one_line("a\tb é 🎉 \\ |") == "a\tb é 🎉 \\ |"
    assert "\n" not in logs.one_line("".join(map(chr, range(0x100))))
