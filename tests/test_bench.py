"""scripts/bench runs with 2 turns and prints every figure, ours and the baseline's.

A smoke test only: it checks that each figure is there, never what it is
(timings depend on the machine; docs/benchmarks.md has the numbers).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FIGURES = {
    "release_to_commit_ms": "release to commit + response.create on the wire (ms)",
    "delta_to_speaker_ms": "first reply delta received to its first sample handed to the speaker",
    "wire_to_speaker_ms": "first reply delta sent by the emulator to its first sample in the",
    "barge_in_ms": "barge-in: press to playback stopped (ms)",
    "reconnect_ms": "connection dropped to the next session ready (ms)",
    "start_to_ready_ms": "process start to READY=1 (ms)",
    "start_to_session_ms": "process start to the first session ready (ms)",
    "cpu_percent": "CPU per audio second",
    "peak_rss_mb": "peak RSS (MB)",
}
BASELINE_CANNOT = {"barge_in_ms", "reconnect_ms", "start_to_ready_ms"}
"""What the SDK example cannot do: printed as n/a with the reason."""


def test_the_bench_runs_two_turns_and_prints_every_figure(tmp_path: Path) -> None:
    report, plot = tmp_path / "bench.json", tmp_path / "turn.png"
    command = [str(REPO / "scripts" / "bench"), "--turns", "2"]
    result = subprocess.run(
        [*command, "--json", str(report), "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "machine: " in out
    for title in FIGURES.values():
        assert title in out, f"{title!r} missing from:\n{out}"
    # Per figure: a line for ours, one for the baseline (figures or n/a), one of ratios.
    assert len(re.findall(r"^  ours +[1-9]", out, re.M)) == len(FIGURES), out
    assert len(re.findall(r"^  baseline \(openai SDK example\) +[1-9]", out, re.M)) == len(
        FIGURES
    ) - len(BASELINE_CANNOT), out
    assert len(re.findall(r"^  baseline \(openai SDK example\) +n/a: ", out, re.M)) == len(
        BASELINE_CANNOT
    ), out
    ratios = re.findall(r"^  ours / baseline +[0-9.]+x", out, re.M)
    assert len(ratios) == len(FIGURES) - len(BASELINE_CANNOT), out
    for target in ("p95 <= 25 ms", "p95 <= prebuffer + 10", "<= 1000 ms", "< 1 %", "<= 60 MB"):
        assert target in out, target

    figures = json.loads(report.read_text())["figures"]
    assert set(figures) == set(FIGURES)
    for key, figure in figures.items():
        assert figure["ours"]["n"] >= 1, key
        if key in BASELINE_CANNOT:
            assert figure["baseline"]["na"], key
        else:
            assert figure["baseline"]["n"] >= 1, key
            assert figure["ratio_p50"] is not None, key
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
