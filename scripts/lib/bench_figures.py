"""The figures of a run, from what was observed of it, and their percentiles.

Every latency is in milliseconds, measured between two moments seen from
outside the client where possible (the emulator's stamps on the wire, the
output file growing, ``READY=1`` arriving), on the machine-wide monotonic
clock. Button times are the script's: script clock zero plus the scripted
second, so a client that acts late on its button pays for it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from bench_runs import Run
from bench_scenario import REPLY_S, Scenario, Turn

OURS_STOP_AFTER_WRITE_S = 0.0
"""A stop writes what was played up to it: the file's last growth is the stop itself."""
OURS_WRITES_EVERY_S = 0.200
"""The daemon's file speaker writes what it played about every 200 ms while playing."""
BASELINE_BLOCK_S = 0.050
"""The example's output stream calls back every 50 ms."""
_DELAY = re.compile(r"reconnecting in ([0-9.]+) seconds")


@dataclass
class Figure:
    """The samples of one figure (milliseconds, or the unit of the figure), or why there are none.

    Attributes:
        values: the samples.
        na: the reason there are none, when the client cannot do it.
        note: context printed after the figure.
    """

    values: list[float] = field(default_factory=list)
    na: str | None = None
    note: str | None = None

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 to 1) by linear interpolation; None without samples."""
        if not self.values:
            return None
        ordered = sorted(self.values)
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def summary(self) -> dict[str, object]:
        """n, p50, p95, max and the samples, for ``--json``."""
        return {
            "n": len(self.values),
            "p50": self.quantile(0.5),
            "p95": self.quantile(0.95),
            "max": max(self.values) if self.values else None,
            "values": [round(v, 3) for v in self.values],
            "na": self.na,
            "note": self.note,
        }


def _ms(start: float, end: float) -> float:
    return (end - start) * 1000


def _first(times: list[float], after: float, before: float = float("inf")) -> float | None:
    return next((t for t in sorted(times) if after <= t < before), None)


def _wire_times(run: Run, direction: str, kind: str) -> list[float]:
    return [e.at for e in run.wire if e.direction == direction and e.type == kind]


def _release_at(run: Run, turn: Turn) -> float:
    assert run.script_zero is not None
    return run.script_zero + turn.release_s


def _press_at(run: Run, turn: Turn) -> float:
    assert run.script_zero is not None
    return run.script_zero + turn.press_s


def _next_press(run: Run, scenario: Scenario, turn: Turn) -> float:
    later = [t for t in scenario.turns if t.number == turn.number + 1]
    return _press_at(run, later[0]) if later else float("inf")


def _dropped_in(run: Run, turn: Turn) -> bool:
    """Whether a connection was dropped between the turn's press and its reply's end."""
    start, end = _press_at(run, turn), _release_at(run, turn) + REPLY_S
    return any(start - 0.1 <= at <= end for at in run.drops)


def release_to_wire(run: Run, scenario: Scenario, kind: str) -> Figure:
    """Release to ``kind`` (commit or response.create) received by the emulator, per turn.

    Turns whose connection was dropped are left out: their commit may wait for a new session.
    """
    times = _wire_times(run, "client", kind)
    figure = Figure()
    for turn in scenario.turns:
        if turn.drop or _dropped_in(run, turn):
            continue
        release = _release_at(run, turn)
        sent = _first(times, release - 0.002, _next_press(run, scenario, turn))
        if sent is not None:
            figure.values.append(_ms(release, sent))
    return figure


def wire_to_speaker(run: Run, scenario: Scenario) -> Figure:
    """First reply delta sent by the emulator to the output file's first growth, per turn."""
    deltas = _wire_times(run, "server", "response.output_audio.delta")
    grown = [at for at, _ in run.growth]
    figure = Figure()
    for turn in scenario.turns:
        release = _release_at(run, turn)
        first = _first(deltas, release, _next_press(run, scenario, turn))
        heard = None if first is None else _first(grown, first)
        if first is not None and heard is not None:
            figure.values.append(_ms(first, heard))
    return figure


def delta_to_speaker_ours(run: Run) -> Figure:
    """The daemon's own ``first_audio_to_play_ms`` of each turn (``turn.done``)."""
    figure = Figure(note="the daemon's turn.done: delta processed to the speaker's first report")
    for _, record in run.events("turn.done"):
        value = record.get("first_audio_to_play_ms")
        if isinstance(value, int | float):
            figure.values.append(float(value))
    return figure


def delta_to_speaker_baseline(run: Run) -> Figure:
    """The baseline's stamps: first delta of an item received to its first frame handed over."""
    figure = Figure(note="its own stamps: delta out of the SDK's iterator to the callback")
    handed = run.stamps.get("handed", [])
    for _item, received, offset in run.stamps.get("items", []):
        block = next((h for h in handed if h[1] + h[2] > offset), None)
        if block is not None:
            figure.values.append(_ms(received, block[0]))
    return figure


def barge_in(run: Run, scenario: Scenario, plays_on_s: float, writes_every_s: float) -> Figure:
    """Press during a reply to the end of the last of that reply played (the stop).

    The reply was playing when the press came; the last time the output file
    grew before the next reply is the last audio handed over, which plays on
    for ``plays_on_s`` more (one block of a player that writes ahead; nothing
    for one that writes what it has played): the speaker falls silent then.
    The file grows at least every ``writes_every_s`` while playing.
    """
    grown = [at for at, _ in run.growth]
    figure = Figure()
    for turn in scenario.barge_ins:
        press = _press_at(run, turn)
        during = [t for t in grown if _release_at(run, turn) > t >= press - 1.5 * writes_every_s]
        if during:  # still playing at the press
            figure.values.append(_ms(press, max(during) + plays_on_s))
    return figure


def truncate_after_press(run: Run, scenario: Scenario) -> Figure:
    """Barge-in press to ``conversation.item.truncate`` received by the emulator."""
    times = _wire_times(run, "client", "conversation.item.truncate")
    times += _wire_times(run, "client", "conversation.item.delete")
    figure = Figure()
    for turn in scenario.barge_ins:
        press = _press_at(run, turn)
        sent = _first(times, press - 0.002, _release_at(run, turn))
        if sent is not None:
            figure.values.append(_ms(press, sent))
    return figure


def reconnects(run: Run) -> tuple[Figure, Figure, Figure]:
    """Drop to the next ``session.ready``; the backoff delays chosen; the dial-to-ready times."""
    ready = run.events("session.ready")
    delays = run.messages("reconnecting in ")
    total, waited, dialled = Figure(), Figure(), Figure()
    for dropped in run.drops:
        after = [(at, record) for at, record in ready if at > dropped]
        if after:
            at, record = after[0]
            total.values.append(_ms(dropped, at))
            connect = record.get("connect_ms")
            if isinstance(connect, int | float):
                dialled.values.append(float(connect))
        chosen = [m for at, m in delays if at > dropped]
        if chosen and (match := _DELAY.search(chosen[0])):
            waited.values.append(float(match.group(1)) * 1000)
    return total, waited, dialled


def startup(run: Run) -> tuple[Figure, Figure]:
    """Process start to ``READY=1`` (ours), and to the first session ready."""
    ready, session = Figure(), Figure()
    if run.kind == "ours":
        if run.clock_zero is not None:
            ready.values.append(_ms(run.spawned_at, run.clock_zero))
        first = run.events("session.ready")
        if first:
            session.values.append(_ms(run.spawned_at, first[0][0]))
    else:
        ready.na = "the example does not tell systemd it is ready (no sd_notify)"
        at = run.stamps.get("session_ready_at")
        if isinstance(at, int | float):
            session.values.append(_ms(run.spawned_at, at))
            session.note = "session.updated received (the example does not wait for it)"
    return ready, session


def cpu_per_audio_s(run: Run) -> Figure:
    """CPU seconds per second of audio, from the script clock's start to the exit, in percent.

    The microphone is always on, so every second of the window is a second of
    captured audio; start-up (imports, devices) is before the window.
    """
    figure = Figure()
    if run.exit is not None and run.clock_zero is not None and run.cpu_at_zero_s is not None:
        seconds = run.exit.at - run.clock_zero
        used = run.exit.cpu_s - run.cpu_at_zero_s
        figure.values.append(100 * used / seconds)
        figure.note = (
            f"{used:.2f} s CPU over {seconds:.1f} s of audio; "
            f"start-up before that {run.cpu_at_zero_s:.2f} s"
        )
    return figure


def peak_rss_mb(run: Run) -> Figure:
    """Peak resident set size over the process's life (MB, 10^6 bytes)."""
    figure = Figure()
    if run.exit is not None:
        figure.values.append(run.exit.peak_rss_bytes / 1e6)
    return figure


def cpu_by_phase(run: Run, scenario: Scenario) -> dict[str, float]:
    """CPU (% of one core) while idle, while the button is held, and while a reply plays.

    From the 50 ms samples after the script's start; each interval counts for
    the phase its middle falls in. A reply is taken to play from the release
    for ``REPLY_S`` plus 0.1 s.
    """
    if run.script_zero is None:
        return {}
    spans: dict[str, list[float]] = {"idle": [0.0, 0.0], "listening": [0.0, 0.0]}
    spans["replying"] = [0.0, 0.0]
    samples = [s for s in run.samples if s[0] >= run.script_zero]
    for (t0, cpu0, _, _), (t1, cpu1, _, _) in itertools.pairwise(samples):
        middle = (t0 + t1) / 2 - run.script_zero
        phase = "idle"
        for turn in scenario.turns:
            if turn.press_s <= middle < turn.release_s:
                phase = "listening"
            elif turn.release_s <= middle < turn.release_s + REPLY_S + 0.1 and phase == "idle":
                phase = "replying"
        spans[phase][0] += cpu1 - cpu0
        spans[phase][1] += t1 - t0
    return {phase: 100 * used / wall for phase, (used, wall) in spans.items() if wall > 0}


def rss_after_ready(run: Run) -> tuple[float, float] | None:
    """(RSS when ready, highest RSS sampled after that), in MB (10^6 bytes)."""
    if run.clock_zero is None:
        return None
    after = [rss for at, _, rss, _ in run.samples if at >= run.clock_zero]
    if not after:
        return None
    return after[0] / 1e6, max(after) / 1e6
