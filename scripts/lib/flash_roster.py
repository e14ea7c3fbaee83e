"""A roster of devices (CSV, one row per card) and the summary table of a batch."""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields, replace
from pathlib import Path

from flash_settings import CardOptions

COLUMNS = (
    "hostname",
    "config",
    "api_key_file",
    "device_token_file",
    "wifi_ssid",
    "wifi_psk_file",
    "wifi_country",
    "ssh_key",
    "user",
    "timezone",
)
"""The roster's columns: the options of scripts/flash, with _ for -. Only hostname is required."""
PATH_COLUMNS = frozenset(
    {"config", "api_key_file", "device_token_file", "wifi_psk_file", "ssh_key"}
)
CREDENTIAL_COLUMNS = frozenset({"api_key_file", "device_token_file"})


class RosterError(Exception):
    """The roster as a whole cannot be used (not one bad row: that only fails its row)."""


@dataclass
class Row:
    """One row: its line in the file, and the card options it makes with the defaults."""

    line: int
    options: CardOptions


def read_roster(path: Path, defaults: CardOptions) -> list[Row]:
    """Reads the roster; each row's empty cells take the command line's values.

    Paths in the roster are relative to the roster's folder. A row that names
    a credential file replaces both credential options of the command line.

    Raises:
        RosterError: the file cannot be read, or its header is wrong.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RosterError(f"--roster {path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RosterError(f"--roster {path}: not UTF-8 text") from None
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in reader.fieldnames or []]
    unknown = [name for name in header if name not in COLUMNS]
    if "hostname" not in header or unknown:
        raise RosterError(
            f"--roster {path}: the first line names the columns, among: {', '.join(COLUMNS)} "
            f"(hostname is required)" + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    known = {f.name for f in fields(CardOptions)}
    rows = []
    for record in reader:
        cells = {
            (key or "").strip(): (value or "").strip()
            for key, value in record.items()
            if key is not None
        }
        if not any(cells.values()):
            continue
        options = replace(defaults, problems=[])
        if any(cells.get(name) for name in CREDENTIAL_COLUMNS):
            options.api_key_file = options.device_token_file = ""
        for name, value in cells.items():
            if value and name in known:
                if name in PATH_COLUMNS:
                    value = str(path.parent / value)
                setattr(options, name, value)
        if None in record:
            options.problems.append("more cells than the header has columns")
        rows.append(Row(reader.line_num, options))
    if not rows:
        raise RosterError(f"--roster {path}: no rows")
    return rows


def table(rows: list[list[str]]) -> str:
    """Rows of cells as a table with aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
