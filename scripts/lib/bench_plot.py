"""The timeline of one turn, ours above the baseline's, drawn as a PNG.

The top panel shows the whole turn on one time axis (seconds from the press):
the button held, each ``input_audio_buffer.append`` reaching the emulator,
each reply delta leaving it, and the spans of audio each write to the output
file covers (a block written ahead, or what was just played). The
bottom panel zooms on the release (milliseconds after it): the commit and
``response.create`` arriving upstream, the first delta sent and received,
and the first sample handed to the speaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bench_figures as fig
from bench_png import Canvas, Colour
from bench_runs import Run
from bench_scenario import Scenario, Turn

WIDTH, HEIGHT = 1100, 560
LEFT, RIGHT = 170, 30
INK: Colour = (30, 30, 30)
GRID: Colour = (225, 225, 225)
COLOURS: dict[str, Colour] = {"ours": (31, 119, 180), "baseline": (230, 120, 20)}
NAMES = {"ours": "ours (appliance run)", "baseline": "baseline (openai SDK)"}


@dataclass
class _Turn:
    """What one client did in the turn shown (seconds after its press)."""

    press: float
    release: float
    appends: list[float]
    deltas: list[float]
    played: list[tuple[float, float]]
    """Spans of playback seen in the output file: (from, to)."""
    marks: list[tuple[str, float]] = field(default_factory=list)


def _observe(run: Run, scenario: Scenario, turn: Turn, ahead_s: float | None) -> _Turn:
    """The turn as seen from outside; ``ahead_s``: the block a player writes ahead.

    With ``ahead_s`` None the player writes what it has already played (in
    batches): each write is the span of audio just before it.
    """
    assert run.script_zero is not None
    press, release = run.script_zero + turn.press_s, run.script_zero + turn.release_s
    later = [t for t in scenario.turns if t.number == turn.number + 1]
    until = run.script_zero + later[0].press_s if later else float("inf")

    def wire(direction: str, kind: str, start: float, end: float) -> list[float]:
        return [
            e.at
            for e in run.wire
            if e.direction == direction and e.type == kind and start <= e.at < end
        ]

    appends = wire("client", "input_audio_buffer.append", press - 0.1, release + 0.1)
    deltas = wire("server", "response.output_audio.delta", release, until)
    played: list[tuple[float, float]] = []
    first_write: float | None = None
    previous_size = 0
    for at, size in run.growth:
        written_s = max(0, size - previous_size) / 2 / 24_000  # 24 kHz 16-bit mono
        previous_size = size
        if release <= at < until:
            played.append((at, at + ahead_s) if ahead_s is not None else (at - written_s, at))
            first_write = at if first_write is None else first_write
    shown = _Turn(0.0, release - press, appends, deltas, played)
    commit = wire("client", "input_audio_buffer.commit", release - 0.002, until)
    create = wire("client", "response.create", release - 0.002, until)
    shown.marks.append(("release", release))
    if commit:
        shown.marks.append(("commit", commit[0]))
    if create:
        shown.marks.append(("response.create", create[0]))
    if deltas:
        shown.marks.append(("1st delta sent", deltas[0]))
    received = _received(run, release) if run.kind == "baseline" else None
    if received is not None:
        shown.marks.append(("1st delta received", received))
    if first_write is not None:  # as the table's figure: the output file first growing
        shown.marks.append(("1st sample to speaker", first_write))
    shown.appends = [at - press for at in appends]
    shown.deltas = [at - press for at in deltas]
    shown.played = [(start - press, end - press) for start, end in played]
    shown.marks = [(label, at - press) for label, at in shown.marks]
    return shown


def _received(run: Run, release: float) -> float | None:
    """When the baseline got the turn's first delta, by its own stamp.

    The daemon's moment is not visible from outside it (its log has whole
    milliseconds between its own moments only), so ours has no such mark.
    """
    items = [at for _, at, _ in run.stamps.get("items", []) if at >= release]
    return items[0] if items else None


def _pick(scenario: Scenario) -> Turn:
    """A plain turn: no drop, not pressed during a reply, and not interrupted."""
    interrupted = {t.number - 1 for t in scenario.barge_ins}
    plain = [
        t for t in scenario.turns if not t.drop and not t.barge_in and t.number not in interrupted
    ]
    candidates = plain or [t for t in scenario.turns if not t.drop and t.number not in interrupted]
    return (candidates or list(scenario.turns))[0]


class _Axis:
    """Maps seconds to pixels across the plotting width."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end

    def x(self, at: float) -> float:
        return LEFT + (at - self.start) / (self.end - self.start) * (WIDTH - LEFT - RIGHT)


def _ticks(canvas: Canvas, axis: _Axis, origin: float, step: float, unit: str, y: int) -> None:
    """Vertical grid lines and labels every ``step`` seconds from ``origin``."""
    k = int((axis.start - origin) // step)
    while origin + k * step <= axis.end:
        at = origin + k * step
        if at >= axis.start:
            x = axis.x(at)
            canvas.vline(x, y - 8, y - 200, GRID)
            value = k * step * (1000 if unit == "ms" else 1)
            label = f"{value:g} {unit}"
            canvas.text(x - Canvas.text_width(label) / 2, y - 5, label, INK)
        k += 1


def _whole(canvas: Canvas, turns: dict[str, _Turn], top: int) -> None:
    ends = [max([t.release, *(end for _, end in t.played)]) for t in turns.values()]
    axis = _Axis(-0.2, max(ends) + 0.2)
    canvas.text(10, top, "The whole turn (seconds after the press)", INK, 2)
    lane_top = top + 28
    lanes = ("button held", "appends reach upstream", "deltas leave upstream", "speaker playing")
    for group, (kind, turn) in enumerate(turns.items()):
        colour = COLOURS[kind]
        base = lane_top + group * 96
        canvas.text(10, base, NAMES[kind], colour)
        for lane, label in enumerate(lanes):
            y = base + 14 + lane * 19
            canvas.text(22, y + 4, label, INK)
            if lane == 0:
                canvas.rect(axis.x(turn.press), y + 3, axis.x(turn.release), y + 13, colour)
            elif lane in (1, 2):
                for at in turn.appends if lane == 1 else turn.deltas:
                    canvas.vline(axis.x(at), y + 2, y + 14, colour)
            else:
                for start, end in turn.played:
                    canvas.rect(axis.x(start), y + 3, axis.x(end) - 1, y + 13, colour)
    _ticks(canvas, axis, 0.0, 0.5, "s", lane_top + 2 * 96 + 12)


def _zoom(canvas: Canvas, turns: dict[str, _Turn], top: int) -> None:
    ends = [max(at - t.release for _, at in t.marks) for t in turns.values()]
    axis = _Axis(-0.003, max(ends) * 1.08 + 0.005)
    canvas.text(10, top, "Around the release (milliseconds after the release)", INK, 2)
    for group, (kind, turn) in enumerate(turns.items()):
        colour = COLOURS[kind]
        base = top + 30 + group * 100
        canvas.text(10, base, NAMES[kind], colour)
        canvas.hline(LEFT, WIDTH - RIGHT, base + 8, GRID)
        taken: list[list[tuple[float, float]]] = [[] for _ in range(5)]
        for label, at in sorted(turn.marks, key=lambda mark: mark[1]):
            x = axis.x(at - turn.release)
            text = f"{label} {(at - turn.release) * 1000:.1f}"
            width = Canvas.text_width(text)
            row = next(
                (
                    r
                    for r, spans in enumerate(taken)
                    if all(x > e or x + width < s for s, e in spans)
                ),
                len(taken) - 1,
            )
            taken[row].append((x - 2, x + width + 6))
            canvas.vline(x, base + 2, base + 18 + row * 14, colour, 2)
            canvas.text(x + 3, base + 12 + row * 14, text, INK)
    step = 0.005 if axis.end < 0.06 else 0.01 if axis.end < 0.15 else 0.05
    _ticks(canvas, axis, 0.0, step, "ms", top + 30 + 2 * 100 + 4)


def draw_turn(scenario: Scenario, ours: Run, baseline: Run, path: Path) -> int:
    """Draw a plain turn of both runs into ``path`` (PNG); returns the turn's number."""
    turn = _pick(scenario)
    turns = {
        "ours": _observe(ours, scenario, turn, None),
        "baseline": _observe(baseline, scenario, turn, fig.BASELINE_BLOCK_S),
    }
    canvas = Canvas(WIDTH, HEIGHT)
    canvas.text(
        10, 8, f"Turn {turn.number} of the bench: ours above, the openai SDK baseline below", INK, 2
    )
    _whole(canvas, turns, 34)
    _zoom(canvas, turns, 280)
    canvas.text(
        10,
        HEIGHT - 16,
        "Wire times are the emulator's stamps; speaker times are the output WAV growing. "
        "When the daemon got a delta is not visible from outside it.",
        INK,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return turn.number
