#!/usr/bin/env python3
"""The baseline: push-to-talk written with the official openai SDK, the way its example does it.

This is what people would write instead of the appliance. It follows
openai-python's ``examples/realtime/push_to_talk_app.py`` and its
``audio_util.AudioPlayerAsync`` line for line where it can:

- ``AsyncOpenAI().realtime.connect(model=...)``, one ``session.update``, then
  ``async for event in conn``; reply deltas are base64-decoded and queued on the
  player, whose frame count is reset on each new item;
- a microphone task that polls a sounddevice ``InputStream`` (``read_available``
  below 20 ms: ``await asyncio.sleep(0)`` and poll again), reads 20 ms,
  and sends it with ``conn.input_audio_buffer.append``; on its first chunk ever
  it also sends ``response.cancel``;
- the talk key toggles recording; stopping sends ``input_audio_buffer.commit``
  and ``response.create``;
- the player's sounddevice ``OutputStream`` callback pulls 50 ms blocks from a
  queue of numpy arrays under a lock, padding with zeros; it is started by the
  first ``add_data`` and never stopped.

Departures, each forced: no Textual UI (key presses come from the bench's
script); the sound devices are WAV files paced by the clock (the stand-ins
below: what the callback hands over is written, its zero padding is not);
``turn_detection`` is ``None``, as the example's comment says to do for a
manual commit (its default, server VAD, would answer on its own); and the
session's turn detection is read where the GA types keep it
(``session.audio.input.turn_detection``: the example reads
``session.turn_detection``, which the GA session has not). The model is the
appliance's default. Lines marked ``# bench`` only take time stamps.

Usage: bench_baseline.py --url WS_BASE --key-file F --input WAV --output WAV
       --script JSON --results JSON. Prints ``started`` on stdout when its script clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

SAMPLE_RATE = 24000
CHANNELS = 1
CHUNK_LENGTH_S = 0.05  # the example's player block
MODEL = "gpt-realtime-2"
INPUT_BUFFER_S = 0.1
"""Audio an idle input stream keeps before it overruns and drops the oldest (seconds)."""

Samples = npt.NDArray[np.int16]


class WavInputStream:
    """Stands in for ``sounddevice.InputStream(channels=1, samplerate=24000, dtype="int16")``.

    Frame k of the WAV is captured k / 24000 s after :meth:`start`; ``read``
    returns what was captured and not read yet. Left unread, it keeps
    ``INPUT_BUFFER_S`` and drops the oldest, as an overrun does.
    """

    def __init__(self, path: Path) -> None:
        with wave.open(str(path), "rb") as wav:
            self._frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        self._started = 0.0
        self._position = 0

    def start(self) -> None:
        self._started = time.monotonic()

    def _captured(self) -> int:
        return int((time.monotonic() - self._started) * SAMPLE_RATE)

    @property
    def read_available(self) -> int:
        captured = self._captured()
        self._position = max(self._position, captured - int(INPUT_BUFFER_S * SAMPLE_RATE))
        return captured - self._position

    def read(self, frames: int) -> tuple[Samples, bool]:
        while self.read_available < frames:  # sounddevice blocks; the example never gets here
            time.sleep(0.001)
        start = self._position
        self._position += frames
        chunk = self._frames[start : start + frames]
        if len(chunk) < frames:
            chunk = np.concatenate((chunk, np.zeros(frames - len(chunk), dtype=np.int16)))
        return chunk.reshape(-1, 1), False

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


class AudioPlayerAsync:
    """The example's player; its ``sd.OutputStream`` is a thread writing a WAV file."""

    def __init__(self, output: Path) -> None:
        self.queue: list[Samples] = []
        self.lock = threading.Lock()
        self.playing = False
        self._frame_count = 0
        self._blocksize = int(CHUNK_LENGTH_S * SAMPLE_RATE)
        self._wav_file = output.open("wb")
        self._wav = wave.open(self._wav_file, "wb")  # noqa: SIM115 (open while the player lives)
        self._wav.setnchannels(CHANNELS)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self._wav_file.flush()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.frames_queued = 0  # bench
        self.frames_played = 0  # bench
        self.handed: list[tuple[float, int, int]] = []  # bench: (time, first frame, frames)

    def callback(self, outdata: Samples, frames: int, time_info: object, status: object) -> None:
        with self.lock:
            data = np.empty(0, dtype=np.int16)

            # get next item from queue if there is still space in the buffer
            while len(data) < frames and len(self.queue) > 0:
                item = self.queue.pop(0)
                frames_needed = frames - len(data)
                data = np.concatenate((data, item[:frames_needed]))
                if len(item) > frames_needed:
                    self.queue.insert(0, item[frames_needed:])

            self._frame_count += len(data)
            self._real = len(data)  # bench: the stand-in writes only these

            # fill the rest of the frames with zeros if there is no more data
            if len(data) < frames:
                data = np.concatenate((data, np.zeros(frames - len(data), dtype=np.int16)))

        outdata[:] = data.reshape(-1, 1)

    def reset_frame_count(self) -> None:
        self._frame_count = 0

    def get_frame_count(self) -> int:
        return self._frame_count

    def add_data(self, data: bytes) -> None:
        with self.lock:
            # bytes is pcm16 single channel audio data, convert to numpy array
            np_data = np.frombuffer(data, dtype=np.int16)
            self.queue.append(np_data)
            self.frames_queued += len(np_data)  # bench
            if not self.playing:
                self.start()

    def start(self) -> None:
        self.playing = True
        self._thread = threading.Thread(target=self._device, name="output stream", daemon=True)
        self._thread.start()

    def idle(self) -> bool:  # bench
        with self.lock:
            return not self.queue

    def terminate(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(1)
        self._wav.close()
        self._wav_file.close()

    def _device(self) -> None:
        """The output stream: a callback every block, on an absolute schedule, from start."""
        started = time.monotonic()
        blocks = 0
        outdata = np.zeros((self._blocksize, CHANNELS), dtype=np.int16)
        while not self._closing.is_set():
            self._real = 0
            self.callback(outdata, self._blocksize, None, None)
            if self._real:
                at = time.monotonic()  # bench
                self.handed.append((at, self.frames_played, self._real))  # bench
                self.frames_played += self._real  # bench
                self._wav.writeframes(outdata[: self._real].tobytes())
                self._wav_file.flush()
            blocks += 1
            delay = started + blocks * CHUNK_LENGTH_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)


class PushToTalk:
    """The example's ``RealtimeApp`` without its UI."""

    def __init__(self, client: AsyncOpenAI, microphone: WavInputStream, output: Path) -> None:
        self.connection: AsyncRealtimeConnection | None = None
        self.session: Any = None
        self.client = client
        self.audio_player = AudioPlayerAsync(output)
        self.last_audio_item_id: str | None = None
        self.should_send_audio = asyncio.Event()
        self.connected = asyncio.Event()
        self.is_recording = False
        self.stream = microphone
        self.stamps: dict[str, Any] = {"items": [], "commits": []}  # bench
        self.responses_done = 0  # bench

    async def handle_realtime_connection(self) -> None:
        async with self.client.realtime.connect(model=MODEL) as conn:
            self.connection = conn
            self.connected.set()
            self.stamps["connected_at"] = time.monotonic()  # bench

            await conn.session.update(
                session={
                    "audio": {"input": {"turn_detection": None}},
                    "model": MODEL,
                    "type": "realtime",
                }
            )

            acc_items: dict[str, Any] = {}

            async for event in conn:
                if event.type == "session.created":
                    self.session = event.session
                    continue

                if event.type == "session.updated":
                    self.session = event.session
                    self.stamps.setdefault("session_ready_at", time.monotonic())  # bench
                    continue

                if event.type == "response.output_audio.delta":
                    if event.item_id != self.last_audio_item_id:
                        self.audio_player.reset_frame_count()
                        self.last_audio_item_id = event.item_id
                        self.stamps["items"].append(  # bench
                            [event.item_id, time.monotonic(), self.audio_player.frames_queued]
                        )

                    bytes_data = base64.b64decode(event.delta)
                    self.audio_player.add_data(bytes_data)
                    continue

                if event.type == "response.output_audio_transcript.delta":
                    try:
                        text = acc_items[event.item_id]
                    except KeyError:
                        acc_items[event.item_id] = event.delta
                    else:
                        acc_items[event.item_id] = text + event.delta
                    continue

                if event.type == "response.done":  # bench
                    self.responses_done += 1

    async def _get_connection(self) -> AsyncRealtimeConnection:
        await self.connected.wait()
        assert self.connection is not None
        return self.connection

    async def send_mic_audio(self) -> None:
        sent_audio = False

        read_size = int(SAMPLE_RATE * 0.02)

        stream = self.stream

        try:
            while True:
                if stream.read_available < read_size:
                    await asyncio.sleep(0)
                    continue

                await self.should_send_audio.wait()
                self.is_recording = True

                data, _ = stream.read(read_size)

                connection = await self._get_connection()
                if not sent_audio:
                    asyncio.create_task(connection.send({"type": "response.cancel"}))  # noqa: RUF006 (as the example)
                    sent_audio = True

                await connection.input_audio_buffer.append(
                    audio=base64.b64encode(cast(Any, data)).decode("utf-8")
                )

                await asyncio.sleep(0)
        finally:
            stream.stop()
            stream.close()

    async def on_key(self) -> None:
        """The talk key ("k" in the example): start recording, or stop and ask for the reply."""
        if self.is_recording:
            self.should_send_audio.clear()
            self.is_recording = False

            if self.session and self.session.audio.input.turn_detection is None:
                conn = await self._get_connection()
                await conn.input_audio_buffer.commit()
                await conn.response.create()
                self.stamps["commits"].append(time.monotonic())  # bench
        else:
            self.should_send_audio.set()
            self.is_recording = True


async def run(args: argparse.Namespace, key: str) -> dict[str, Any]:
    """Run the script, then wait for the last reply to play out; return the stamps."""
    script: list[tuple[float, str]] = json.loads(args.script)
    client = AsyncOpenAI(api_key=key, websocket_base_url=args.url)
    microphone = WavInputStream(Path(args.input))
    app = PushToTalk(client, microphone, Path(args.output))
    microphone.start()
    workers = [
        asyncio.create_task(app.handle_realtime_connection()),
        asyncio.create_task(app.send_mic_audio()),
    ]
    started = time.monotonic()
    app.stamps["started_at"] = started
    print("started", flush=True)
    presses = sum(1 for _, action in script if action == "press")
    try:
        for at, _action in script:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            await app.on_key()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (  # noqa: ASYNC110 (the player is a thread)
            app.responses_done >= presses and app.audio_player.idle()
        ):
            await asyncio.sleep(0.05)
        await asyncio.sleep(CHUNK_LENGTH_S * 2)  # the last block leaves the queue, then plays
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        app.audio_player.terminate()
    app.stamps["handed"] = app.audio_player.handed
    app.stamps["responses_done"] = app.responses_done
    return app.stamps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="websocket base URL, e.g. ws://HOST:PORT/v1")
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--input", required=True, help="the microphone WAV (24 kHz mono)")
    parser.add_argument("--output", required=True, help="the speaker WAV to write")
    parser.add_argument("--script", required=True, help='JSON [[seconds, "press"], ...]')
    parser.add_argument("--results", required=True, help="where the time stamps go (JSON)")
    args = parser.parse_args()
    stamps = asyncio.run(run(args, Path(args.key_file).read_text().strip()))
    Path(args.results).write_text(json.dumps(stamps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
