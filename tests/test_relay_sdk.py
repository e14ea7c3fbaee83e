"""The official openai SDK client, holding only a device token, completes a turn via the relay."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import numpy as np
from openai import AsyncOpenAI
from relaying import KEY, MODEL, PTT_SESSION, fleet


def test_sdk_client_with_a_device_token_completes_a_turn_and_never_sees_the_key(
    tmp_path: Path,
) -> None:
    spoken = (0.2 * np.sin(2 * np.pi * 330 * np.arange(12_000) / 24_000) * 32767).astype("<i2")
    audio = spoken.tobytes()  # 0.5 s of 24 kHz s16le mono

    async def scenario() -> None:
        async with fleet(tmp_path, devices=("kitchen",)) as f:
            token = f.tokens["kitchen"]
            assert token != KEY and KEY not in token
            client = AsyncOpenAI(api_key=token, websocket_base_url=f.base_url, max_retries=0)
            raw: list[bytes] = []
            received = b""
            async with client.realtime.connect(model=MODEL) as conn:
                handshake = conn._connection.response
                assert handshake is not None
                raw.append(str(handshake.headers).encode() + handshake.body)
                await conn.session.update(session=PTT_SESSION)  # type: ignore[arg-type]
                while True:
                    message = await conn.recv_bytes()
                    raw.append(message)
                    event = conn.parse_event(message)
                    if event.type == "session.updated":
                        await conn.input_audio_buffer.append(audio=base64.b64encode(audio).decode())
                        await conn.input_audio_buffer.commit()
                        await conn.response.create()
                    elif event.type == "response.output_audio.delta":
                        received += base64.b64decode(event.delta)
                    elif event.type == "response.done":
                        assert event.response.status == "completed"
                        break
                    elif event.type == "error":
                        raise AssertionError(event.error.message)
            await client.close()
            # The emulator accepts only the real key: it was the relay that presented it.
            (connection,) = f.emulator.connections
            assert connection.model == MODEL
            assert connection.commits == [audio]
            assert received == audio
            everything = b"".join(raw)
            assert KEY.encode() not in everything
            assert KEY.removeprefix("sk-").encode() not in everything
            (session,) = f.relay.sessions
            assert session.device == "kitchen" and session.turns == 1

    async def bounded() -> None:
        async with asyncio.timeout(20):
            await scenario()

    asyncio.run(bounded())
