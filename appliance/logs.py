"""Logging set-up for the CLI, and structured log events for everyone."""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

LOGGER_NAME = "appliance"
"""The logger ``setup`` configures: the parent of every module's logger."""

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
"""The text format; journald adds the timestamps."""

RESERVED = ("ts", "level", "logger", "msg", "event", "exc", "stack")
"""Top-level JSON keys of every line; a field of the same name is written as ``field_<name>``."""

_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r"})
del _ESCAPES[ord("\t")]  # a tab breaks no line


class _Installed(logging.StreamHandler[TextIO]):
    """The handler ``setup`` installs, told apart so that a new ``setup`` replaces it."""


def setup(
    *,
    log_format: Literal["text", "json", "journal"] = "text",
    level: int = logging.INFO,
    stream: TextIO | None = None,
) -> None:
    """Sends the ``appliance`` logger's records to ``stream``, one line each, or to journald.

    Only the ``appliance`` logger is touched, never the root logger. Calling it
    again replaces the handler it installed before.

    Args:
        log_format: ``text`` (``LEVEL logger: message``), ``json`` (one object a
            line) or ``journal`` (native journald entries with the event fields;
            text on ``stream`` when there is no journald).
        level: The lowest level logged, e.g. ``logging.DEBUG``.
        stream: Where lines go; ``None`` means ``sys.stderr`` at the time of the call.
    """
    from appliance import journal

    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        if isinstance(old, _Installed | journal.JournalHandler):
            logger.removeHandler(old)
            old.close()
    handler: logging.Handler
    if log_format == "journal" and journal.journald_available():
        handler = journal.JournalHandler()
    else:
        handler = _Installed(sys.stderr if stream is None else stream)
        handler.setFormatter(
            JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT)
        )
    logger.addHandler(handler)
    logger.setLevel(level)
    if log_format == "journal" and not isinstance(handler, journal.JournalHandler):
        logger.warning("no journald (%s is missing): logging to stderr", journal.SOCKET)


def log_event(
    logger: logging.Logger,
    level: int,
    event: str,
    msg: str,
    /,
    *args: object,
    exc_info: bool | BaseException | None = None,
    **fields: object,
) -> None:
    """Logs a human-readable message that also carries a structured event.

    Args:
        logger: The module's logger.
        level: The level, e.g. ``logging.INFO``.
        event: The event name, e.g. ``"turn.done"`` (DESIGN.md "Log events").
        msg: The %-style message, readable on its own.
        *args: The message's arguments.
        exc_info: As for ``Logger.log``: ``True`` adds the exception being handled.
        **fields: The event's fields; numbers in milliseconds, ``None`` where
            a figure does not apply.
    """
    if logger.isEnabledFor(level):
        extra = {"event": event, "fields": fields}
        logger.log(level, msg, *args, exc_info=exc_info, extra=extra, stacklevel=2)


def event_of(record: logging.LogRecord) -> tuple[str, dict[str, object]] | None:
    """Returns ``(event, fields)`` for a record made by ``log_event``, else ``None``."""
    event = getattr(record, "event", None)
    fields = getattr(record, "fields", None)
    if isinstance(event, str) and isinstance(fields, dict):
        return event, fields
    return None


def one_line(text: str) -> str:
    """Returns ``text`` with line breaks and control characters (not tabs) escaped."""
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """The standard formatter, with each record escaped into one line.

    Line breaks and other control characters in the message or the traceback
    are escaped as ``\\n``, ``\\r``, ``\\xNN`` and ``\\u2028``: a traceback
    reads as one line in ``journalctl``, and ``printf '%b'`` turns it back
    into lines. Backslashes are left alone, for legibility, so the escaping is
    not exactly reversible. (Not ``" | "``: that is ambiguous with a message
    containing it.)
    """

    def format(self, record: logging.LogRecord) -> str:
        """Formats the record as usual (traceback included), then escapes it."""
        return one_line(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, event fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        """Formats the record as a JSON object on one line."""
        ts = datetime.fromtimestamp(record.created, tz=UTC)
        line: dict[str, object] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        structured = event_of(record)
        if structured is not None:
            event, fields = structured
            line["event"] = event
            for name, value in fields.items():
                line[f"field_{name}" if name in RESERVED else name] = _jsonable(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def _jsonable(value: object) -> object:
    """Returns ``value`` ready for JSON: a non-finite number is ``null``, strict JSON has none."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
