"""Log records as native journald entries, with the structured event fields as journal fields.

Under systemd the daemon's stderr goes to the journal anyway, as plain text;
the native protocol keeps what text would lose: the priority, the logger and
code location, and each event field of ``log_event`` as a field of its own
(``APPLIANCE_EVENT=turn.done``, ``TURN=3``, ``RELEASE_TO_COMMIT_MS=212``), so
``journalctl APPLIANCE_EVENT=turn.done -o json`` lists turn latencies.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from appliance.logs import event_of

SOCKET = Path("/run/systemd/journal/socket")
"""journald's native socket; without it there is no journald to log to."""

IDENTIFIER = "appliance"
"""``SYSLOG_IDENTIFIER`` of every entry: ``journalctl -t appliance``."""

PRIORITIES = {
    logging.CRITICAL: 2,  # crit
    logging.ERROR: 3,  # err
    logging.WARNING: 4,  # warning
    logging.INFO: 6,  # info
    logging.DEBUG: 7,  # debug
}
"""syslog priorities of the standard levels; others take the next standard level up."""

RESERVED = frozenset(
    {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "LOGGER", "CODE_FILE", "CODE_LINE", "CODE_FUNC"}
)
"""Fields every entry sets; an event field of the same name is written as ``FIELD_<NAME>``."""

_NOT_IN_NAMES = re.compile(r"[^A-Z0-9_]")


def journald_available() -> bool:
    """True if journald listens on its native socket."""
    return SOCKET.is_socket()


def stderr_is_journal(env: Mapping[str, str] | None = None, *, fd: int = 2) -> bool:
    """True if ``fd`` (stderr) is the journal stream systemd gave the service (``$JOURNAL_STREAM``).

    Args:
        env: The environment; ``None`` means ``os.environ``.
        fd: The file descriptor to compare, stderr by default.
    """
    stream = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(fd)
    except OSError:
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def priority(level: int) -> int:
    """The syslog priority (0 emerg to 7 debug) of a logging level."""
    for standard in sorted(PRIORITIES):
        if level <= standard:
            return PRIORITIES[standard]
    return PRIORITIES[logging.CRITICAL]


def field_name(name: str) -> str:
    """The journal field name of an event field: ``audio_in_ms`` -> ``AUDIO_IN_MS``.

    Journal field names are upper-case letters, digits and underscores, and
    do not start with a digit or an underscore.
    """
    upper = _NOT_IN_NAMES.sub("_", name.upper()).lstrip("_") or "FIELD"
    if upper[0].isdigit() or upper in RESERVED:
        return f"FIELD_{upper}"
    return upper


def journal_fields(record: logging.LogRecord, *, message: str) -> dict[str, str]:
    """The journal entry of ``record``, whose formatted text is ``message``.

    Returns:
        Field names and values: ``MESSAGE``, ``PRIORITY``, ``SYSLOG_IDENTIFIER``,
        ``LOGGER``, the code location, and for an event ``APPLIANCE_EVENT`` and
        its fields; a field whose value is ``None`` (a figure that does not
        apply) is left out; booleans are ``true`` or ``false``.
    """
    fields = {
        "MESSAGE": message,
        "PRIORITY": str(priority(record.levelno)),
        "SYSLOG_IDENTIFIER": IDENTIFIER,
        "LOGGER": record.name,
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName,
    }
    structured = event_of(record)
    if structured is not None:
        event, values = structured
        fields["APPLIANCE_EVENT"] = event
        for name, value in values.items():
            if value is None:
                continue
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            fields[field_name(name)] = text
    return fields


class JournalHandler(logging.Handler):
    """Sends each record to journald as one entry (see :func:`journal_fields`).

    The message is formatted with the handler's formatter (by default the
    message alone) and a traceback stays in ``MESSAGE``, on several lines, as
    journald allows. The record's arguments are not sent separately, so
    nothing but the message text leaves the process.
    """

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        import systemd.journal  # libsystemd's sd_journal_sendv, via systemd-python

        self._sendv = systemd.journal.sendv

    def emit(self, record: logging.LogRecord) -> None:
        """Sends the record; a failure is reported the standard way (``handleError``)."""
        try:
            fields = journal_fields(record, message=self.format(record))
            self._sendv(*(f"{name}={value}" for name, value in fields.items()))
        except Exception:
            self.handleError(record)


def error_text(text: str, *, env: Mapping[str, str] | None = None) -> str:
    """``text`` for stderr as an error: each line at priority err when stderr is the journal.

    journald reads a ``<3>`` prefix on a line of the stream as its priority
    (``SyslogLevelPrefix=``, on by default), so ``journalctl -p err`` finds
    the error; elsewhere the text is unchanged.
    """
    if not stderr_is_journal(env):
        return text
    return "\n".join(f"<{PRIORITIES[logging.ERROR]}>{line}" for line in text.split("\n"))
