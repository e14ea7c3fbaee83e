"""Journal entries from log records, and when the CLI logs to journald.

The entries reaching a real journald are checked in test_nspawn.py; here the
mapping itself, and the choice of handler.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import journal, logs


def record(level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    made = logging.getLogger("appliance.daemon").makeRecord(
        "appliance.daemon", level, "daemon.py", 42, "turn %d %s", (3, "replied"), None, "_log"
    )
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_an_event_becomes_journal_fields() -> None:
    fields = journal.journal_fields(
        record(
            event="turn.done",
            fields={
                "turn": 3,
                "outcome": "replied",
                "release_to_commit_ms": 12,
                "audio_out_ms": None,
                "message": "clash",
                "held": True,
                "3d": 1,
            },
        ),
        message="turn 3 replied",
    )
    assert fields["MESSAGE"] == "turn 3 replied"
    assert fields["SYSLOG_IDENTIFIER"] == "appliance"
    assert fields["LOGGER"] == "appliance.daemon"
    assert fields["PRIORITY"] == "6"
    assert (fields["CODE_FILE"], fields["CODE_LINE"], fields["CODE_FUNC"]) == (
        "daemon.py",
        "42",
        "_log",
    )
    assert fields["APPLIANCE_EVENT"] == "turn.done"
    assert fields["TURN"] == "3" and fields["OUTCOME"] == "replied"
    assert fields["RELEASE_TO_COMMIT_MS"] == "12"
    assert "AUDIO_OUT_MS" not in fields  # a figure that does not apply is left out
    assert fields["FIELD_MESSAGE"] == "clash"  # never overwrites the entry's own fields
    assert fields["HELD"] == "true"
    assert fields["FIELD_3D"] == "1"


def test_a_plain_record_has_no_event_fields() -> None:
    fields = journal.journal_fields(record(), message="hello")
    assert "APPLIANCE_EVENT" not in fields
    assert set(fields) == {
        "MESSAGE",
        "PRIORITY",
        "SYSLOG_IDENTIFIER",
        "LOGGER",
        "CODE_FILE",
        "CODE_LINE",
        "CODE_FUNC",
    }


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.DEBUG, 7),
        (logging.INFO, 6),
        (logging.WARNING, 4),
        (logging.ERROR, 3),
        (logging.CRITICAL, 2),
        (logging.INFO + 1, 4),
        (logging.CRITICAL + 10, 2),
    ],
)
def test_levels_map_to_syslog_priorities(level: int, priority: int) -> None:
    assert journal.priority(level) == priority


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("session_id", "SESSION_ID"),
        ("commit_to_first_audio_ms", "COMMIT_TO_FIRST_AUDIO_MS"),
        ("a-b.c", "A_B_C"),
        ("_private", "PRIVATE"),
        ("priority", "FIELD_PRIORITY"),
        ("", "FIELD"),
    ],
)
def test_field_names_are_valid_journal_names(name: str, expected: str) -> None:
    assert journal.field_name(name) == expected


def test_stderr_is_the_journal_only_when_journal_stream_names_it(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        stat = os.fstat(stream.fileno())
        named = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        assert journal.stderr_is_journal(named, fd=stream.fileno())
        assert not journal.stderr_is_journal({}, fd=stream.fileno())
        other = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino + 1}"}
        assert not journal.stderr_is_journal(other, fd=stream.fileno())
        assert not journal.stderr_is_journal({"JOURNAL_STREAM": "junk"}, fd=stream.fileno())


def test_the_journal_format_falls_back_to_stderr_without_journald() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("appliance")
    try:
        logs.setup(log_format="journal", stream=stream)
        handlers = [h for h in logger.handlers if isinstance(h, journal.JournalHandler)]
        if journal.journald_available():
            assert handlers
        else:
            assert not handlers
            assert "no journald" in stream.getvalue()
        logs.setup(log_format="text", stream=stream)  # replaces it, whichever it was
        assert not [h for h in logger.handlers if isinstance(h, journal.JournalHandler)]
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)


def test_the_cli_picks_the_journal_when_stderr_is_the_journal_stream(tmp_path: Path) -> None:
    # A child whose stderr is a file that JOURNAL_STREAM names, as systemd sets it up.
    errors = tmp_path / "stderr"
    with errors.open("w") as stream:
        stat = os.fstat(stream.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        code = subprocess.run(
            [sys.executable, "-m", "appliance", "config", "--config", str(tmp_path / "none")],
            env=env,
            stderr=stream,
            stdout=subprocess.DEVNULL,
            timeout=60,
            check=False,
        ).returncode
    assert code == 78
    text = errors.read_text()
    if not journal.journald_available():
        assert "no journald" in text  # it chose the journal, then fell back
    # The error's lines carry journald's priority prefix: journalctl -p err finds them.
    error = text[text.index("<3>appliance: error:") :].splitlines()
    assert error and all(line.startswith("<3>") for line in error), text


def test_errors_elsewhere_are_printed_as_they_are() -> None:
    text = "appliance: error: invalid configuration (2 problems):\n  - a\n  - b"
    assert journal.error_text(text, env={}) == text
