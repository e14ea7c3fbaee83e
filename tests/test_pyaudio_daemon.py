"""The whole daemon on the real PyAudio path: ALSA file plugins, soxr, the emulator.

Capture comes from ALSA's ``file`` plugin (exact samples, at 48 or 44.1 kHz
device rates); what the emulator receives must match the spoken reference
within 30 dB SNR after resampling; the echoed reply must land in the
playback file.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import numpy as np
import pytest
import soxr
from soundenv import (
    SoundEnv,
    sound_fixture,  # noqa: F401 - registers the fixture "sound"
)

from appliance import config as config_module
from appliance.audio import pcm
from appliance.audio.wav import read_wav_pcm24k
from appliance.demo import bundled_sample
from appliance.effects import Effect, TurnDone
from appliance.emulator import Emulator
from appliance.wiring import build_daemon

KEY = "sk-test-0123456789abcdef"
SPEECH_S = 2.0
LEAD_IN_S = 0.5


def speech() -> np.ndarray:
    """Two seconds of the bundled spoken sample, 24 kHz int16."""
    audio = np.frombuffer(read_wav_pcm24k(bundled_sample()), dtype="<i2")
    return audio[: int(SPEECH_S * pcm.RATE_HZ)]


def snr_db(reference: np.ndarray, signal: np.ndarray) -> float:
    """SNR of ``signal`` against ``reference`` at their best alignment (dB)."""
    ref = reference.astype(np.float64)
    sig = signal.astype(np.float64)
    correlation = np.correlate(sig, ref[: pcm.RATE_HZ // 2], mode="valid")
    lag = int(np.argmax(np.abs(correlation)))
    aligned = sig[lag : lag + ref.size]
    assert aligned.size == ref.size, "the signal does not hold the whole reference"
    noise = aligned - ref
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(noise**2), 1e-9)))


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    os.chmod(path, 0o600)
    return path


def device_audio(reference: np.ndarray, rate_hz: int, *, lead_in_s: float, tail_s: float) -> bytes:
    """``reference`` at ``rate_hz``, between silences, as a device would capture it."""
    converted = soxr.resample(reference.astype(np.float64), pcm.RATE_HZ, rate_hz, quality="VHQ")
    silence = np.zeros(int(lead_in_s * rate_hz))
    whole = np.concatenate([silence, converted, np.zeros(int(tail_s * rate_hz))])
    return bytes(np.clip(np.rint(whole), -32768, 32767).astype("<i2").tobytes())


async def one_turn(
    tmp_path: Path, *, input_rate_hz: int, output_rate_hz: int
) -> tuple[bytes, bytes, list[TurnDone]]:
    """Say the reference in one scripted turn; return what was sent, the echo, the turns."""
    effects: list[Effect] = []
    async with Emulator(api_key=KEY, chunk_interval_s=0.01) as emulator:
        config = config_module.load(
            None,
            env={},
            overrides={
                "upstream.url": emulator.url,
                "upstream.api_key_file": key_file(tmp_path),
                "audio.backend": "pyaudio",
                "audio.input": "filein",
                "audio.output": "fileout",
                "audio.input_rate_hz": input_rate_hz,
                "audio.output_rate_hz": output_rate_hz,
                "audio.earcons": False,
                "button.backend": "script",
                "button.script": [[0.2, "press"], [0.2 + LEAD_IN_S + SPEECH_S + 0.3, "release"]],
                "button.exit_after_script": True,
            },
        )
        daemon = build_daemon(config, observer=lambda effect, now: effects.append(effect))
        async with asyncio.timeout(30):
            assert await daemon.run() == 0
    (connection,) = emulator.connections
    sent = b"".join(
        base64.b64decode(m["audio"])
        for m in connection.received
        if m["type"] == "input_audio_buffer.append"
    )
    echo = b"".join(
        base64.b64decode(m["delta"])
        for m in connection.sent
        if m["type"] == "response.output_audio.delta"
    )
    return sent, echo, [e for e in effects if isinstance(e, TurnDone)]


@pytest.mark.parametrize(("input_rate_hz", "output_rate_hz"), [(48_000, 24_000), (44_100, 44_100)])
def test_speech_captured_by_pyaudio_reaches_the_emulator_and_the_reply_the_file(
    sound: SoundEnv, tmp_path: Path, input_rate_hz: int, output_rate_hz: int
) -> None:
    reference = speech()
    sound.infile.write_bytes(
        device_audio(reference, input_rate_hz, lead_in_s=LEAD_IN_S, tail_s=6.0)
    )
    sent, echo, turns = asyncio.run(
        one_turn(tmp_path, input_rate_hz=input_rate_hz, output_rate_hz=output_rate_hz)
    )
    ((turn),) = turns
    assert turn.metrics.outcome == "replied"
    assert snr_db(reference, np.frombuffer(sent, dtype="<i2")) >= 30.0
    assert echo == sent  # the emulator echoes the turn
    played = sound.outfile.read_bytes()
    if output_rate_hz == pcm.RATE_HZ:
        assert played.find(echo) != -1, "the reply is not in the playback file, bit for bit"
    else:
        back = soxr.resample(
            np.frombuffer(played, dtype="<i2").astype(np.float64), output_rate_hz, pcm.RATE_HZ
        )
        assert snr_db(reference, back) >= 30.0
