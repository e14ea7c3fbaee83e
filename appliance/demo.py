"""``appliance demo``: one whole turn, all local, with a printed timeline.

The demo starts the emulator on a free loopback port, gives the daemon a
spoken sample as its microphone (silence before and after, so the scripted
press lands before the speech and the release after it), presses over the
speech, and writes what the speaker played to a WAV file. The timeline comes
from the same effects the daemon acts on, so it shows what really happened.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal, TextIO

from appliance import config as config_module
from appliance.audio import pcm
from appliance.audio.wav import read_wav_pcm24k, write_wav
from appliance.effects import Effect, Mark, SessionReady, TurnDone
from appliance.emulator import Emulator
from appliance.emulator import Observer as EmulatorObserver
from appliance.wiring import build_daemon

LEAD_IN_S = 0.8
"""Silence before the speech in the microphone (seconds)."""
PRESS_AT_S = 0.3
"""The scripted press, after the daemon is ready (seconds)."""
HOLD_AFTER_SPEECH_S = 0.4
"""The button stays down this long after the speech ends (seconds)."""
TAIL_S = 2.0
"""Silence after the speech in the microphone (seconds)."""
TIME_LIMIT_S = 60.0
"""The demo gives up after this long (seconds)."""


def bundled_sample() -> Path:
    """The bundled spoken sample (16 kHz mono WAV)."""
    return Path(str(resources.files("appliance") / "assets" / "hello.wav"))


@dataclass
class Timeline:
    """Points of the demo's turn, in seconds of the loop clock."""

    points: list[tuple[float, str]] = field(default_factory=list)
    outcome: TurnDone | None = None

    def observe(self, effect: Effect, now: float) -> None:
        """The daemon's observer: keeps the points worth showing."""
        if isinstance(effect, Mark):
            self.points.append((now, _MARK_LABELS[effect.name]))
        elif isinstance(effect, SessionReady):
            self.points.append((now, f"session ready ({effect.session_id})"))
        elif isinstance(effect, TurnDone):
            self.outcome = effect
            first_audio = [at for at, label in self.points if label == _MARK_LABELS["first_audio"]]
            delay_ms = effect.metrics.first_audio_to_play_ms
            if first_audio and delay_ms is not None:
                self.points.append((first_audio[0] + delay_ms / 1000, "first reply audio played"))

    def render(self, start: float) -> str:
        """The timeline as lines of milliseconds since ``start``."""
        lines = [f"{0:>7} ms  daemon ready (devices open)"]
        for at, label in sorted(self.points):
            lines.append(f"{round((at - start) * 1000):>7} ms  {label}")
        return "\n".join(lines)


_MARK_LABELS = {
    "pressed": "button pressed",
    "released": "button released",
    "committed": "turn committed (input_audio_buffer.commit + response.create sent)",
    "first_audio": "first reply audio received",
    "played_out": "last reply audio played",
}


async def run_demo(
    *,
    input_wav: Path | None,
    output_wav: Path,
    reply: Literal["echo", "tone"] = "echo",
    earcons: bool = False,
    out: TextIO,
    observer: EmulatorObserver | None = None,
) -> int:
    """Run one turn against a local emulator and print its timeline to ``out``.

    Args:
        input_wav: the speech to say; the bundled sample when None.
        output_wav: where the speaker's output is written.
        reply: the emulator's reply mode.
        earcons: whether the cues are played (and so written) too.
        out: where the timeline is printed.
        observer: sees every message the emulator receives and sends.

    Returns:
        0 when the turn was answered, 1 otherwise.

    Raises:
        AudioFileError: the input cannot be read.
    """
    speech = read_wav_pcm24k(input_wav or bundled_sample())
    speech_s = len(speech) / pcm.SAMPLE_BYTES / pcm.RATE_HZ
    with tempfile.TemporaryDirectory(prefix="appliance-demo-") as tmp:
        workdir = Path(tmp)
        microphone = workdir / "microphone.wav"
        lead, tail = pcm.ms_to_bytes(LEAD_IN_S * 1000), pcm.ms_to_bytes(TAIL_S * 1000)
        write_wav(microphone, bytes(lead) + speech + bytes(tail))
        key = secrets.token_urlsafe(24)
        key_file = workdir / "api-key"
        key_file.touch(mode=0o600)
        key_file.write_text(key + "\n")
        release_at = LEAD_IN_S + speech_s + HOLD_AFTER_SPEECH_S
        async with Emulator(api_key=key, reply=reply, observer=observer) as emulator:
            config = config_module.load(
                None,
                env={},
                overrides={
                    "upstream.url": emulator.url,
                    "upstream.api_key_file": key_file,
                    "audio.backend": "file",
                    "audio.input": str(microphone),
                    "audio.output": str(output_wav),
                    "audio.earcons": earcons,
                    "button.backend": "script",
                    "button.script": [[PRESS_AT_S, "press"], [release_at, "release"]],
                    "button.exit_after_script": True,
                },
            )
            timeline = Timeline()
            daemon = build_daemon(config, observer=timeline.observe)
            print(
                f"appliance demo: {speech_s:.1f} s of speech, pressed over it, "
                f"answered by the local emulator ({reply})",
                file=out,
            )
            async with asyncio.timeout(TIME_LIMIT_S):
                await daemon.run()
    assert daemon.ready_at is not None
    print(timeline.render(daemon.ready_at), file=out)
    done = timeline.outcome
    if done is None or done.metrics.outcome != "replied":
        why = "no turn ended" if done is None else f"{done.metrics.outcome}: {done.reason}"
        print(f"the turn was not answered ({why})", file=out)
        return 1
    seconds = (done.metrics.audio_out_ms or 0) / 1000
    print(f"reply: {seconds:.1f} s of audio written to {output_wav}", file=out)
    return 0
