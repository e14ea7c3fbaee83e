"""The official openai SDK's realtime client completes a turn against the emulator."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
from openai import AsyncOpenAI
from schema import schema_observer

from appliance.emulator import Emulator

KEY = "sk-test-sdk"


def test_sdk_client_completes_an_echo_turn() -> None:
    spoken = (0.2 * np.sin(2 * np.pi * 330 * np.arange(12_000) / 24_000) * 32767).astype("<i2")
    audio = spoken.tobytes()  # 0.5 s of 24 kHz s16le mono

    async def scenario() -> None:
        observer, violations = schema_observer()
        async with Emulator(api_key=KEY, observer=observer) as emu:
            # The SDK appends "/realtime" and "?model=" to the websocket base URL.
            base = emu.url.removesuffix("/realtime")
            client = AsyncOpenAI(api_key=KEY, websocket_base_url=base, max_retries=0)
            async with client.realtime.connect(model="gpt-realtime-2") as conn:
                await conn.session.update(
                    session={
                        "type": "realtime",
                        "output_modalities": ["audio"],
                        "audio": {
                            "input": {
                                "format": {"type": "audio/pcm", "rate": 24000},
                                "turn_detection": None,
                            },
                            "output": {"format": {"type": "audio/pcm", "rate": 24000}},
                        },
                    }
                )
                kinds: list[str] = []
                received = b""
                ready = False
                async for event in conn:
                    kinds.append(event.type)
                    if event.type == "session.updated" and not ready:
                        ready = True
                        assert event.session.type == "realtime"
                        assert event.session.audio is not None
                        assert event.session.audio.input is not None
                        assert event.session.audio.input.turn_detection is None
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
            assert kinds[0] == "session.created"
            assert received == audio
            assert emu.connections[0].model == "gpt-realtime-2"
            assert emu.connections[0].appends_before_updated == 0
            await client.close()
        assert violations == []

    async def bounded() -> None:
        async with asyncio.timeout(15):
            await scenario()

    asyncio.run(bounded())
