"""The chaos soak: real daemons through fault proxies to faulty emulators; no turn is lost.

Several daemons run side by side in this process, each with a file
microphone (speech, repeated), a file speaker, a button that presses for
0.4 s, waits for the turn to end and presses again, and compressed watchdog
timings. Each talks to its own emulator through its own fault proxy; both
live in a separate process (``chaos_upstream.py``) and draw their faults from
the seed. The daemons are black boxes: what counts is what they report
(``TurnDone``, cues) and what the emulators recorded.

To reproduce a run: ``CHAOS_SEED=<seed> .venv/bin/python -m pytest -s tests/test_chaos.py``.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import config as config_module
from appliance.audio.wav import read_wav_pcm24k, write_wav
from appliance.button import ButtonSink
from appliance.daemon import Daemon
from appliance.demo import bundled_sample
from appliance.effects import Effect, Mark, PlayCue, SessionLost, SessionReady, TurnDone
from appliance.wiring import audio_devices, upstream_link

SEED = int(os.environ.get("CHAOS_SEED", "20250611"))
VERBOSE = os.environ.get("CHAOS_VERBOSE") == "1"
"""Print every daemon's merged timeline (with ``-s``)."""
DAEMONS = 6
TURNS_EACH = 36
HOLD_S = 0.4
WARMUP_TURNS = 30
WEDGE_S = 30.0
"""A turn not ended this long after its release is wedged (seconds; generous)."""
TIME_LIMIT_S = 280.0
"""The whole soak must end within this (seconds; generous: it takes about 100 on 2 cores)."""
MAX_OUTAGE_S = 20.0
"""Longest acceptable time without a session (seconds; generous: a stall lasts 4 s at most,
reconnecting 0.5 s, and the watchdog notices a dead link within about 2 s)."""
KEY = "sk-test-chaos"
MIC_REPEATS = 25
"""The microphone says the bundled sample (3.8 s) this many times, then silence."""

OVERRIDES: dict[str, object] = {
    "watchdog.ping_interval_s": 0.5,
    "watchdog.ping_timeout_s": 0.5,
    "watchdog.response_timeout_s": 2,
    "watchdog.reconnect_base_s": 0.05,
    "watchdog.reconnect_max_s": 0.5,
    "watchdog.rotate_before_expiry_s": 1,
    "audio.hold_s": 10,
    "audio.earcons": False,
}


def rss_kb() -> int:
    """This process's resident set size (kilobytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Tally:
    """What one daemon reported."""

    index: int
    presses: int = 0
    done: list[TurnDone] = field(default_factory=list)
    error_cues: int = 0
    wedged: int | None = None
    """The turn that never ended, if one did not."""
    timeline: list[tuple[float, str]] = field(default_factory=list)
    outages: list[float] = field(default_factory=list)
    """Seconds from losing the session in use to the next one being ready."""
    session: str | None = None
    lost_at: float | None = None


class Finish:
    """Where the buttons meet after their last turn, so that the end is measured all alive."""

    def __init__(self, count: int, at_end: Callable[[], None]) -> None:
        self._waiting = count
        self._at_end = at_end
        self._all_here = asyncio.Event()

    def leave(self) -> None:
        """Count one button as arrived, without waiting for the others."""
        self._waiting -= 1
        if self._waiting == 0:
            self._at_end()
            self._all_here.set()

    async def arrive(self) -> None:
        """Count one button as arrived, and wait for all the others."""
        self.leave()
        await self._all_here.wait()


class PacedButton:
    """Presses for ``HOLD_S``, waits until that turn has ended, pauses, and again.

    After the last turn it waits for the other daemons' buttons at ``finish``,
    and only then says it is exhausted (the daemon exits once idle).

    Args:
        tally: Where presses and the wedge are counted.
        turns: How many turns to make.
        rng: Chooses the pauses between turns.
        finish: Where the buttons meet at the end.
    """

    def __init__(self, tally: Tally, *, turns: int, rng: random.Random, finish: Finish) -> None:
        self._tally = tally
        self._finish = finish
        self._turns = turns
        self._rng = rng
        self._ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._exhausted = False

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def turn_ended(self) -> None:
        self._ended.set()

    async def open(self, sink: ButtonSink) -> None:
        self._task = asyncio.create_task(self._run(sink))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    async def _run(self, sink: ButtonSink) -> None:
        try:
            await self._turns_one_by_one(sink)
        except asyncio.CancelledError:
            self._finish.leave()  # closed early (the daemon failed): do not hold the others
            raise
        await self._finish.arrive()
        self._exhausted = True

    async def _turns_one_by_one(self, sink: ButtonSink) -> None:
        tally = self._tally
        await asyncio.sleep(self._rng.uniform(0.1, 1.0))
        for turn in range(1, self._turns + 1):
            self._ended.clear()
            sink("press")
            tally.presses += 1
            await asyncio.sleep(HOLD_S)
            sink("release")
            try:
                async with asyncio.timeout(WEDGE_S):
                    while len(tally.done) < turn:
                        await self._ended.wait()
                        self._ended.clear()
            except TimeoutError:
                tally.wedged = turn
                tally.timeline.append((asyncio.get_running_loop().time(), f"turn {turn} wedged"))
                return
            if turn == self._turns:
                return
            # Mostly short pauses; sometimes long enough for a rotation or an idle fault.
            pause = self._rng.uniform(0.05, 0.3)
            if self._rng.random() < 0.1:
                pause = self._rng.uniform(1.0, 3.0)
            await asyncio.sleep(pause)


def observe(
    tally: Tally, button: PacedButton, also: Callable[[Effect, float], None]
) -> Callable[[Effect, float], None]:
    def observer(effect: Effect, now: float) -> None:
        also(effect, now)
        if isinstance(effect, TurnDone):
            tally.done.append(effect)
            tally.timeline.append(
                (now, f"turn {effect.metrics.turn} {effect.metrics.outcome} {effect.reason or ''}")
            )
            button.turn_ended()
        elif isinstance(effect, PlayCue) and effect.cue == "error":
            tally.error_cues += 1
        elif isinstance(effect, SessionLost):
            tally.timeline.append((now, f"session {effect.session_id} lost: {effect.reason}"))
            if effect.session_id == tally.session and tally.lost_at is None:
                tally.lost_at = now
        elif isinstance(effect, SessionReady):
            tally.timeline.append((now, f"session {effect.session_id} ready"))
            tally.session = effect.session_id
            if tally.lost_at is not None:
                tally.outages.append(now - tally.lost_at)
                tally.lost_at = None
        elif isinstance(effect, Mark):
            tally.timeline.append((now, f"turn {effect.turn} {effect.name}"))

    return observer


async def run_daemon(
    index: int,
    url: str,
    tmp_path: Path,
    microphone: Path,
    key_file: Path,
    tally: Tally,
    finish: Finish,
    also: Callable[[Effect, float], None],
) -> None:
    config = config_module.load(
        None,
        env={},
        overrides={
            "upstream.url": url,
            "upstream.api_key_file": key_file,
            "audio.backend": "file",
            "audio.input": str(microphone),
            "audio.output": str(tmp_path / f"out{index}.wav"),
            "button.backend": "script",
            "button.script": [],
            "button.exit_after_script": True,
            **OVERRIDES,
        },
    )
    rng = random.Random(f"{SEED}/button/{index}")
    button = PacedButton(tally, turns=TURNS_EACH, rng=rng, finish=finish)
    mic, speaker = audio_devices(config)
    daemon = Daemon(
        config,
        microphone=mic,
        speaker=speaker,
        button=button,
        upstream=upstream_link(config),
        observer=observe(tally, button, also),
    )
    task = asyncio.create_task(daemon.run())
    while not task.done():
        await asyncio.wait([task], timeout=0.5)
        if tally.wedged is not None and button.exhausted and not task.done():
            task.cancel()  # it will never finish its wedged turn: stop it, it is counted
            await asyncio.wait([task])
    if not task.cancelled():
        assert task.result() == 0


@dataclass
class Resources:
    rss_start_kb: int = 0
    rss_warm_kb: int = 0
    rss_end_kb: int = 0
    fds_start: int = 0
    fds_end: int = 0
    tasks_start: int = 0
    tasks_end: int = 0


async def soak(
    urls: list[str], tmp_path: Path, microphone: Path, key_file: Path
) -> tuple[list[Tally], Resources]:
    figures = Resources()
    gc.collect()
    figures.rss_start_kb, figures.fds_start = rss_kb(), open_fds()
    figures.tasks_start = len(asyncio.all_tasks())
    tallies = [Tally(i) for i in range(len(urls))]
    warm = asyncio.Event()

    def at_end() -> None:
        gc.collect()
        figures.rss_end_kb = rss_kb()

    def count_turns(effect: Effect, now: float) -> None:
        if not warm.is_set() and sum(len(t.done) for t in tallies) >= WARMUP_TURNS:
            warm.set()
            gc.collect()
            figures.rss_warm_kb = rss_kb()

    finish = Finish(len(urls), at_end)
    async with asyncio.timeout(TIME_LIMIT_S):
        await asyncio.gather(
            *(
                run_daemon(i, url, tmp_path, microphone, key_file, tallies[i], finish, count_turns)
                for i, url in enumerate(urls)
            )
        )
    for _ in range(50):  # let closing sockets finish closing
        if len(asyncio.all_tasks()) == figures.tasks_start and open_fds() == figures.fds_start:
            break
        await asyncio.sleep(0.1)
    figures.fds_end = open_fds()
    figures.tasks_end = len(asyncio.all_tasks())
    return tallies, figures


def report(
    tallies: list[Tally], upstreams: list[dict[str, Any]], resources: Resources, took_s: float
) -> tuple[dict[str, Any], list[str]]:
    """The soak's figures, and a description of every problem found."""
    outcomes: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    partial = 0
    for tally in tallies:
        outcomes.update(done.metrics.outcome for done in tally.done)
        lost = tally.presses - len(tally.done)
        if lost:
            problems.append(f"daemon {tally.index}: {lost} turn(s) never ended")
        numbers = [done.metrics.turn for done in tally.done]
        if numbers != sorted(set(numbers)):
            problems.append(f"daemon {tally.index}: turns ended twice or out of order: {numbers}")
        failed = sum(done.metrics.outcome == "failed" for done in tally.done)
        if tally.error_cues != failed:
            problems.append(
                f"daemon {tally.index}: {failed} failed turns but {tally.error_cues} error cues"
            )
        for done in tally.done:
            m = done.metrics
            if m.outcome == "replied" and m.audio_out_ms != m.audio_in_ms:
                partial += 1
                problems.append(
                    f"daemon {tally.index} turn {m.turn}: {m.audio_in_ms} ms said, "
                    f"{m.audio_out_ms} ms echoed"
                )
    connections = [c for u in upstreams for c in u["connections"]]
    duplicates = sum(c["duplicate_creates"] for c in connections)
    while_active = sum(c["creates_while_active"] for c in connections)
    if duplicates or while_active:
        problems.append(
            f"{duplicates} response.create without a new commit, "
            f"{while_active} while one was active"
        )
    emulator_faults: collections.Counter[str] = collections.Counter()
    for c in connections:
        emulator_faults.update(c["faults"].keys())
    proxy_faults: collections.Counter[str] = collections.Counter(
        e["what"].split()[0]
        for u in upstreams
        for e in u["proxy"]
        if e["what"].startswith(("cut ", "stall "))
    )
    proxy_faults["sliced connections"] = sum(
        "sliced" in e["what"] for u in upstreams for e in u["proxy"] if e["what"].startswith("open")
    )
    reasons: collections.Counter[str] = collections.Counter(
        _reason(done.reason) for t in tallies for done in t.done if done.metrics.outcome == "failed"
    )
    turns = sum(len(t.done) for t in tallies)
    lost = sum(t.presses - len(t.done) for t in tallies)
    rss_growth_kb = resources.rss_end_kb - resources.rss_warm_kb
    longest_outage_s = max((o for t in tallies for o in t.outages), default=0.0)
    for tally in tallies:
        for outage in tally.outages:
            if outage >= MAX_OUTAGE_S:
                problems.append(f"daemon {tally.index}: no session for {outage:.1f} s")
    figures = {
        "seed": SEED,
        "seconds": round(took_s, 1),
        "daemons": len(tallies),
        "turns": turns,
        "outcomes": dict(outcomes),
        "failed_because": dict(reasons),
        "lost": lost,
        "partial": partial,
        "duplicate_responses": duplicates + while_active,
        "outages": sum(len(t.outages) for t in tallies),
        "longest_outage_s": round(longest_outage_s, 2),
        "outages_over_5_s": sorted(round(o, 1) for t in tallies for o in t.outages if o > 5),
        "connections": len(connections),
        "refused_handshakes": sum(u["refused"] for u in upstreams),
        "responses": dict(collections.Counter(s for c in connections for s in c["responses"])),
        "emulator_faults": dict(emulator_faults),
        "proxy_faults": dict(proxy_faults),
        "rss_kb": [resources.rss_start_kb, resources.rss_warm_kb, resources.rss_end_kb],
        "rss_growth_kb": rss_growth_kb,
        "fds": [resources.fds_start, resources.fds_end],
        "tasks": [resources.tasks_start, resources.tasks_end],
    }
    if rss_growth_kb >= 5 * 1024:
        problems.append(f"RSS grew by {rss_growth_kb} kB after the warm-up")
    if resources.fds_end != resources.fds_start:
        problems.append(
            f"open descriptors: {resources.fds_start} before, {resources.fds_end} after"
        )
    if resources.tasks_end != resources.tasks_start:
        problems.append(
            f"asyncio tasks: {resources.tasks_start} before, {resources.tasks_end} after"
        )
    return figures, problems


def _reason(reason: str | None) -> str:
    """A failure reason without its variable details (ids, figures), to count alike ones."""
    text = (reason or "?").split(": ")[0]
    return "".join("#" if c.isdigit() else c for c in text)


def timelines(
    tallies: list[Tally], upstreams: list[dict[str, Any]], *, everything: bool = False
) -> str:
    """Each troubled daemon's timeline, merged with its upstream's, for the report.

    Times are seconds on the monotonic clock both processes share, from the
    daemon's first event.

    Args:
        everything: Every daemon, not only the troubled ones.
    """
    lines = []
    for tally, upstream in zip(tallies, upstreams, strict=True):
        troubled = (
            tally.wedged is not None
            or tally.presses != len(tally.done)
            or any(outage >= MAX_OUTAGE_S for outage in tally.outages)
        )
        if not (troubled or everything):
            continue
        events = list(tally.timeline)
        for number, c in enumerate(upstream["connections"], 1):
            events.append(
                (c["opened_at"], f"  [emulator {number}] open {c['session']}, faults {c['faults']}")
            )
            if c["stalled_at"] is not None:
                events.append((c["stalled_at"], f"  [emulator {number}] goes silent"))
            if c["closed_at"] is not None:
                events.append((c["closed_at"], f"  [emulator {number}] closed: {c['log']}"))
        events += [
            (e["at"], f"    [proxy {e['connection']}] {e['what']}") for e in upstream["proxy"]
        ]
        events.sort(key=lambda event: event[0])
        start = events[0][0] if events else 0.0
        lines.append(f"--- daemon {tally.index} (wedged at turn {tally.wedged})")
        lines += [f"{at - start:8.3f} {what}" for at, what in events]
    return "\n".join(lines)


def test_chaos_soak(tmp_path: Path) -> None:
    speech = read_wav_pcm24k(bundled_sample())
    microphone = tmp_path / "mic.wav"
    write_wav(microphone, speech * MIC_REPEATS)
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    upstream = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("chaos_upstream.py")),
            *("--seed", str(SEED), "--count", str(DAEMONS), "--key-file", str(key_file)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "upstream.log").open("w"),
        text=True,
    )
    try:
        assert upstream.stdin is not None and upstream.stdout is not None
        urls = json.loads(upstream.stdout.readline())["urls"]
        started = time.monotonic()
        tallies, resources = asyncio.run(soak(urls, tmp_path, microphone, key_file))
        took_s = time.monotonic() - started
        upstream.stdin.close()
        upstreams = json.loads(upstream.stdout.readline())["upstreams"]
        assert upstream.wait(timeout=30) == 0
    finally:
        if upstream.poll() is None:
            upstream.kill()
            upstream.wait()
    figures, problems = report(tallies, upstreams, resources, took_s)
    print(f"chaos soak figures: {json.dumps(figures)}", file=sys.stderr)
    if problems:
        print("chaos soak problems:\n" + "\n".join(problems), file=sys.stderr)
        print(timelines(tallies, upstreams), file=sys.stderr)
    if VERBOSE:
        print(timelines(tallies, upstreams, everything=True), file=sys.stderr)
    assert figures["turns"] >= 200
    assert sum(figures["emulator_faults"].values()) >= 20
    assert figures["proxy_faults"].get("cut", 0) >= 10
    assert figures["proxy_faults"].get("stall", 0) >= 10
    assert figures["outcomes"].get("replied", 0) >= figures["turns"] // 2
    assert problems == []
