"""The bench's table: every figure for ours and the baseline, the ratios, the targets.

Targets are printed next to their figure with ``pass`` or ``MISS``; nothing is
asserted. A figure the baseline cannot produce is ``n/a`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import bench_figures as fig
from bench_runs import Run
from bench_scenario import Scenario

from appliance.config import AudioConfig

PREBUFFER_MS = AudioConfig().prebuffer_ms
"""The speaker's default prebuffer (milliseconds); the file speaker has none."""


@dataclass
class Row:
    """One figure of the table.

    Attributes:
        key: its name in ``--json``.
        title: what it measures, with its unit.
        ours: the daemon's samples.
        baseline: the baseline's samples (or why there are none).
        target: the target, in words; empty if there is none.
        check: whether the daemon's figure meets the target (None: cannot tell).
        single: one sample, not a distribution: print the value alone.
        details: lines printed under the figure (context, the figure's parts).
        marks: the mark of each part of a compound target, e.g. ``MISS / pass``.
    """

    key: str
    title: str
    ours: fig.Figure
    baseline: fig.Figure
    target: str = ""
    check: Callable[[fig.Figure, fig.Figure], bool | None] | None = None
    single: bool = False
    details: list[str] = field(default_factory=list)
    marks: Callable[[fig.Figure, fig.Figure], str] | None = None

    def verdict(self) -> bool | None:
        """True (pass), False (miss) or None (no target, or no figure)."""
        if self.check is None or not self.ours.values:
            return None
        return self.check(self.ours, self.baseline)

    def mark(self) -> str:
        """``pass``, ``MISS``, one per part of a compound target, or empty."""
        if self.marks is not None and self.ours.values:
            return self.marks(self.ours, self.baseline)
        return _mark(self.verdict())


def _p95_at_most(limit: float) -> Callable[[fig.Figure, fig.Figure], bool | None]:
    def check(ours: fig.Figure, _baseline: fig.Figure) -> bool | None:
        p95 = ours.quantile(0.95)
        return None if p95 is None else p95 <= limit

    return check


def _cpu_check(ours: fig.Figure, baseline: fig.Figure) -> bool | None:
    mine, theirs = ours.quantile(0.5), baseline.quantile(0.5)
    if mine is None:
        return None
    return mine < 1.0 and (theirs is None or mine <= theirs / 2)


def _cpu_marks(ours: fig.Figure, baseline: fig.Figure) -> str:
    mine, theirs = ours.quantile(0.5), baseline.quantile(0.5)
    if mine is None:
        return ""
    half = "-" if theirs is None else _mark(mine <= theirs / 2)
    return f"{_mark(mine < 1.0)} / {half}"


def _mark(ok: bool | None) -> str:
    return {True: "pass", False: "MISS", None: ""}[ok]


def _phases(run: Run, scenario: Scenario) -> str:
    phases = fig.cpu_by_phase(run, scenario)
    return ", ".join(f"{name} {value:.2f} %" for name, value in phases.items()) or "none"


def _memory(run: Run) -> str:
    after = fig.rss_after_ready(run)
    if after is None:
        return "none"
    return f"RSS when ready {after[0]:.1f} MB, highest after that {after[1]:.1f} MB"


def rows(
    scenario: Scenario, ours: Run, baseline: Run, *, floor_percent: float | None = None
) -> list[Row]:
    """Every figure of the issue, for both clients.

    Args:
        scenario: the turns both ran.
        ours: the daemon's run.
        baseline: the baseline's run.
        floor_percent: the CPU (% of one core) of a bare asyncio loop waking every
            20 ms on this machine, if measured (``bench_probes.wakeup_floor``).
    """
    dropped, waited, dialled = fig.reconnects(ours)
    ready_ours, session_ours = fig.startup(ours)
    ready_base, session_base = fig.startup(baseline)
    playing_on = fig.barge_in(
        baseline, scenario, fig.BASELINE_BLOCK_S, writes_every_s=fig.BASELINE_BLOCK_S
    )
    played = playing_on.quantile(0.5)
    barge_na = (
        "the example never stops its player on a press (nor truncates): the reply played on"
        + (f" until {played:.0f} ms after the press (p50)" if played is not None else "")
    )
    own_commit = fig.Figure()
    for _, record in ours.events("turn.done"):
        value = record.get("release_to_commit_ms")
        if isinstance(value, int | float):
            own_commit.values.append(float(value))
    commit_ours = fig.release_to_wire(ours, scenario, "input_audio_buffer.commit")
    commit_base = fig.release_to_wire(baseline, scenario, "input_audio_buffer.commit")
    truncate = fig.truncate_after_press(ours, scenario)
    table = [
        Row(
            "release_to_commit_ms",
            "release to commit + response.create on the wire (ms)",
            fig.release_to_wire(ours, scenario, "response.create"),
            fig.release_to_wire(baseline, scenario, "response.create"),
            "p95 <= 25 ms",
            _p95_at_most(25),
            details=[
                f"to input_audio_buffer.commit alone: ours {_p(commit_ours)}, "
                f"baseline {_p(commit_base)}",
                f"the daemon's own release_to_commit_ms (turn.done): {_p(own_commit)}",
            ],
        ),
        Row(
            "delta_to_speaker_ms",
            "first reply delta received to its first sample handed to the speaker (ms)",
            fig.delta_to_speaker_ours(ours),
            fig.delta_to_speaker_baseline(baseline),
            f"p95 <= prebuffer + 10 = {PREBUFFER_MS + 10} ms",
            _p95_at_most(PREBUFFER_MS + 10),
            details=[
                "ours: the daemon's first_audio_to_play_ms; baseline: its own stamps; the file "
                f"speaker has no prebuffer (a sound card's has {PREBUFFER_MS} ms)"
            ],
        ),
        Row(
            "wire_to_speaker_ms",
            "first reply delta sent by the emulator to its first sample in the output file (ms)",
            fig.wire_to_speaker(ours, scenario),
            fig.wire_to_speaker(baseline, scenario),
        ),
        Row(
            "barge_in_ms",
            "barge-in: press to playback stopped (ms)",
            fig.barge_in(
                ours,
                scenario,
                fig.OURS_STOP_AFTER_WRITE_S,
                writes_every_s=fig.OURS_WRITES_EVERY_S,
            ),
            fig.Figure(na=barge_na),
            details=[f"press to conversation.item.truncate on the wire: ours {_p(truncate)}"],
        ),
        Row(
            "reconnect_ms",
            "connection dropped to the next session ready (ms)",
            dropped,
            fig.Figure(
                na="the example's `async for event in conn` ends with the connection; it "
                "passes no on_reconnecting, so the SDK does not reconnect"
            ),
            details=[
                f"ours: backoff delay drawn {_p(waited)} (full jitter, base 0.5 s, doubling per "
                f"drop within a minute, R6); dial to ready {_p(dialled)}"
            ],
        ),
        Row(
            "start_to_ready_ms",
            "process start to READY=1 (ms)",
            ready_ours,
            ready_base,
            "<= 1000 ms",
            lambda o, _b: (o.quantile(0.5) or 0) <= 1000,
            single=True,
        ),
        Row(
            "start_to_session_ms",
            "process start to the first session ready (ms)",
            session_ours,
            session_base,
            single=True,
        ),
        Row(
            "cpu_percent",
            "CPU per audio second (% of one core: CPU s / audio s x 100)",
            fig.cpu_per_audio_s(ours),
            fig.cpu_per_audio_s(baseline),
            "< 1 % / <= baseline / 2",
            _cpu_check,
            single=True,
            marks=_cpu_marks,
            details=[
                f"ours by phase: {_phases(ours, scenario)}",
                f"baseline by phase: {_phases(baseline, scenario)}",
            ]
            + (
                [
                    f"for scale: on this machine a Python asyncio loop that only wakes every "
                    f"20 ms (once per audio period) uses {floor_percent:.2f} %; the daemon's file "
                    f"devices wake about every 200 ms"
                ]
                if floor_percent is not None
                else []
            ),
        ),
        Row(
            "peak_rss_mb",
            "peak RSS (MB)",
            fig.peak_rss_mb(ours),
            fig.peak_rss_mb(baseline),
            "<= 60 MB",
            lambda o, _b: (o.quantile(0.5) or 0) <= 60,
            single=True,
            details=[
                f"ours: {_memory(ours)}; baseline: {_memory(baseline)}",
                f"the daemon's file microphone streams its {scenario.microphone_s:.0f} s WAV, "
                "decoding about 200 ms at a time",
            ],
        ),
    ]
    for row in table:
        for name, figure in (("ours", row.ours), ("baseline", row.baseline)):
            if figure.note:
                row.details.append(f"{name}: {figure.note}")
    return table


def _p(figure: fig.Figure) -> str:
    """``p50/p95/max`` in a few characters, or ``none``."""
    if not figure.values:
        return "none"
    p50, p95 = figure.quantile(0.5), figure.quantile(0.95)
    return f"p50 {p50:.1f} / p95 {p95:.1f} / max {max(figure.values):.1f} ms"


def _cells(figure: fig.Figure, single: bool) -> list[str]:
    if not figure.values:
        return ["0", "-", "-", "-"]
    if single:
        return ["1", _num(figure.values[0]), "", ""]
    values = [figure.quantile(0.5), figure.quantile(0.95), max(figure.values)]
    return [str(len(figure.values)), *(_num(v) for v in values)]


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
    return f"{value:.{digits}f}"


def _ratio(ours: float | None, baseline: float | None) -> str:
    if ours is None or baseline is None or baseline == 0:
        return "-"
    return f"{ours / baseline:.2f}x"


def render(table: list[Row]) -> str:
    """The table as text: per figure a title line, then ours, baseline, and their ratio."""
    width = 34
    lines = [f"{'':{width}} {'n':>3} {'p50':>8} {'p95':>8} {'max':>8}  target"]
    for row in table:
        lines.append(row.title)
        target = f"{row.target:26} {row.mark()}" if row.target else ""
        n, a, b, c = _cells(row.ours, row.single)
        lines.append(f"  {'ours':{width - 2}} {n:>3} {a:>8} {b:>8} {c:>8}  {target}".rstrip())
        label = "baseline (openai SDK example)"
        if row.baseline.na:
            lines.append(f"  {label:{width - 2}} n/a: {row.baseline.na}")
        else:
            n, a, b, c = _cells(row.baseline, row.single)
            lines.append(f"  {label:{width - 2}} {n:>3} {a:>8} {b:>8} {c:>8}".rstrip())
            quantiles = [0.5] if row.single else [0.5, 0.95]
            ratios = [_ratio(row.ours.quantile(q), row.baseline.quantile(q)) for q in quantiles]
            if not row.single:
                ours_max = max(row.ours.values) if row.ours.values else None
                base_max = max(row.baseline.values) if row.baseline.values else None
                ratios.append(_ratio(ours_max, base_max))
            cells = " ".join(f"{r:>8}" for r in ratios)
            lines.append(f"  {'ours / baseline':{width - 2}} {'':>3} {cells}".rstrip())
        lines += [f"    {detail}" for detail in row.details]
    return "\n".join(lines)


def as_json(table: list[Row]) -> dict[str, object]:
    """Every figure with its samples, target and verdict, for ``--json``."""
    out: dict[str, object] = {}
    for row in table:
        out[row.key] = {
            "title": row.title,
            "ours": row.ours.summary(),
            "baseline": row.baseline.summary(),
            "ratio_p50": _safe_ratio(row.ours.quantile(0.5), row.baseline.quantile(0.5)),
            "ratio_p95": _safe_ratio(row.ours.quantile(0.95), row.baseline.quantile(0.95)),
            "target": row.target or None,
            "pass": row.verdict(),
            "mark": row.mark() or None,
            "details": row.details,
        }
    return out


def _safe_ratio(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or baseline is None or baseline == 0:
        return None
    return ours / baseline
