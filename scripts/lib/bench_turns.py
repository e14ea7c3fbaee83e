"""The turn benchmark behind scripts/bench: the daemon and an openai SDK baseline, side by side.

Runs ``appliance run`` (file audio, script button) against the local emulator on
loopback through N scripted turns with barge-ins and dropped connections, then
the same turns through a client written with the official ``openai`` SDK the
way its push-to-talk example is (``bench_baseline.py``), each as its own
process. Prints every figure with p50, p95 and max, the ratios ours/baseline
and the targets with a pass/miss mark; ``--json`` writes them all, and a PNG
timeline of one turn is drawn (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench_plot import draw_turn
from bench_probes import wakeup_floor
from bench_report import as_json, render, rows
from bench_runs import run_baseline, run_ours
from bench_scenario import Scenario

from appliance.demo import bundled_sample

REPO = Path(__file__).resolve().parent.parent.parent


def machine() -> dict[str, object]:
    """What the numbers were measured on: CPU, cores, memory, kernel, Python, load."""
    model, virtual = "unknown CPU", False
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")) and model == "unknown CPU":
                model = line.partition(":")[2].strip()
            if line.startswith("flags") and " hypervisor" in line:
                virtual = True
    except OSError:
        pass
    memory_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": model,
        "virtual_machine": virtual,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1e6, 1),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "appliance": metadata.version("appliance"),
        "openai": metadata.version("openai"),
        "load_before": os.getloadavg()[0],
    }


def describe(scenario: Scenario) -> str:
    """One line: the turns, barge-ins, drops and how long they take."""
    count = len(scenario.turns)
    return (
        f"{count} turns of 2-3 s with 1.2 s replies ({len(scenario.barge_ins)} pressed during "
        f"the previous reply, {len(scenario.drops)} losing their connection), "
        f"{scenario.end_s:.0f} s per client"
    )


def bench(args: argparse.Namespace) -> int:
    """Run both clients through the scenario and report; returns the exit code."""
    scenario = Scenario.build(args.turns, drops=args.drops)
    key = "sk-bench-" + secrets.token_urlsafe(24)
    about = machine()
    started = datetime.now(UTC)
    print(f"appliance bench, {started:%Y-%m-%d %H:%M} UTC: {describe(scenario)}")
    print(
        f"machine: {about['cpu']}{' (virtual machine)' if about['virtual_machine'] else ''}, "
        f"{about['cores']} cores, {about['memory_gb']} GB, "
        f"{about['arch']}, Linux {about['kernel']}, Python {about['python']}, "
        f"openai {about['openai']}; load average {about['load_before']:.2f}",
        flush=True,
    )
    floor = wakeup_floor()
    with tempfile.TemporaryDirectory(prefix="appliance-bench-") as tmp:
        folder = Path(tmp)
        microphone = folder / "microphone.wav"
        scenario.write_microphone(args.input or bundled_sample(), microphone)
        (folder / "ours").mkdir()
        (folder / "baseline").mkdir()
        wall = time.monotonic()
        ours = run_ours(
            scenario, folder=folder / "ours", microphone=microphone, key=key, debug=args.verbose
        )
        baseline = run_baseline(
            scenario,
            folder=folder / "baseline",
            microphone=microphone,
            key=key,
            debug=args.verbose,
        )
        wall = time.monotonic() - wall
    about["load_after"] = os.getloadavg()[0]
    failed = [run for run in (ours, baseline) if run.error or run.script_zero is None]
    for run in failed:
        print(f"{run.kind}: the run failed: {run.error or 'it never started its script'}")
    table = rows(scenario, ours, baseline, floor_percent=floor)
    print(render(table))
    print(
        f"both runs took {wall:.0f} s; load average {about['load_before']:.2f} before, "
        f"{about['load_after']:.2f} after (other work on the machine makes the numbers noisy)"
    )
    if args.json is not None:
        report = {
            "date": started.isoformat(timespec="seconds"),
            "machine": about,
            "scenario": {
                "turns": len(scenario.turns),
                "barge_ins": [t.number for t in scenario.barge_ins],
                "drops": [t.number for t in scenario.drops],
                "script": scenario.script,
            },
            "figures": as_json(table),
            "cpu_floor_percent": floor,
            "failed": [run.kind for run in failed],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.json}")
    if args.plot is not None and not failed:
        shown = draw_turn(scenario, ours, baseline, args.plot)
        print(f"timeline of turn {shown} drawn in {args.plot}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10, help="scripted turns (at least 2)")
    parser.add_argument(
        "--drops", type=int, default=3, help="turns that lose their connection (ours only)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure here")
    parser.add_argument(
        "--plot",
        type=Path,
        default=REPO / "docs" / "bench-turn.png",
        metavar="PNG",
        help="the timeline of one turn (default: docs/bench-turn.png)",
    )
    parser.add_argument("--no-plot", dest="plot", action="store_const", const=None)
    parser.add_argument("--input", type=Path, metavar="WAV", help="speech (default: bundled)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show a failed run's log")
    args = parser.parse_args()
    if args.turns < 2:
        parser.error("--turns must be at least 2")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
