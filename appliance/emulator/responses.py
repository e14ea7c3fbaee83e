"""One model response of the emulator, as the GA event sequence the real service sends.

``start()`` gives the opening events, ``step()`` one delta at a time, and
``finish()`` the closing ones: completed, or cancelled part-way. The caller
(``Conversation``) decides when; the server paces the steps.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.emulator.replies import bytes_per_ms, chunk_sizes
from appliance.emulator.wire import new_id

__all__ = ["ActiveResponse", "ResponseRecord"]


@dataclass
class ResponseRecord:
    """What a response produced, for tests to inspect."""

    response_id: str
    """The ``resp_...`` identifier."""
    status: str = "in_progress"
    """``in_progress``, then ``completed`` or ``cancelled``; ``failed`` under a fault."""
    audio_ms: dict[str, float] = field(default_factory=dict)
    """Milliseconds of audio sent in deltas, per output item id."""
    transcript: str = ""
    """The transcript (or text) sent so far."""


class ActiveResponse:
    """The state of one response while it streams.

    Args:
        response_id: ``resp_...`` identifier.
        item_id: Identifier of the single assistant message item it outputs.
        audio: Reply audio, encoded in ``audio_format``; ignored in text mode.
        transcript: Transcript of the audio, or the text in text mode.
        audio_format: Output format object of the response.
        voice: Voice name reported in the response object.
        text_only: True for ``output_modalities == ["text"]``.
        conversation_id: ``conv_...`` of the default conversation, or None for
            an out-of-band response (``conversation: "none"``).
        previous_item_id: The item the output item follows in the conversation.
        input_tokens: Input token count to report in ``usage``.
    """

    def __init__(
        self,
        response_id: str,
        *,
        item_id: str,
        audio: bytes,
        transcript: str,
        audio_format: Mapping[str, Any],
        voice: str,
        text_only: bool,
        conversation_id: str | None,
        previous_item_id: str | None,
        input_tokens: int,
    ) -> None:
        self.id = response_id
        self.item_id = item_id
        self.in_conversation = conversation_id is not None
        self.record = ResponseRecord(response_id)
        self._audio = b"" if text_only else audio
        self._words = transcript.split(" ")
        self._format = dict(audio_format)
        self._voice = voice
        self._text_only = text_only
        self._conversation_id = conversation_id
        self._previous_item_id = previous_item_id
        self._input_tokens = input_tokens
        self._chunks = (
            [1] * len(self._words)
            if text_only
            else chunk_sizes(len(self._audio), audio_format=audio_format)
        )
        self._chunk_index = 0
        self._audio_offset = 0
        self._words_sent = 0
        self.record.audio_ms[item_id] = 0.0

    @property
    def audio_ms(self) -> float:
        """Milliseconds of audio sent so far."""
        return self._audio_offset / bytes_per_ms(self._format)

    @property
    def sent_audio(self) -> bytes:
        """The audio sent in deltas so far."""
        return self._audio[: self._audio_offset]

    @property
    def exhausted(self) -> bool:
        """True once every delta has been produced."""
        return self._chunk_index >= len(self._chunks)

    def start(self) -> list[dict[str, Any]]:
        """The opening events, from ``response.created`` to ``response.content_part.added``."""
        item = self.item(status="in_progress", content=[])
        events = [
            self._event("response.created", response=self._response("in_progress", output=[])),
            self._event(
                "rate_limits.updated",
                rate_limits=[
                    {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                    {"name": "tokens", "limit": 40000, "remaining": 35000, "reset_seconds": 7.5},
                ],
            ),
            self._event("response.output_item.added", **self._index(), item=item),
        ]
        if self.in_conversation:
            events.append(
                self._event(
                    "conversation.item.added", previous_item_id=self._previous_item_id, item=item
                )
            )
        part: dict[str, Any] = (
            {"type": "text", "text": ""}
            if self._text_only
            else {
                "type": "audio",
                "transcript": "",
            }
        )
        events.append(
            self._event("response.content_part.added", **self._where(), content_index=0, part=part)
        )
        return events

    def step(self) -> list[dict[str, Any]]:
        """The next delta: audio (with any transcript words due by then) or text."""
        if self.exhausted:
            return []
        self._chunk_index += 1
        events: list[dict[str, Any]] = []
        if not self._text_only:
            size = self._chunks[self._chunk_index - 1]
            chunk = self._audio[self._audio_offset : self._audio_offset + size]
            self._audio_offset += size
            self.record.audio_ms[self.item_id] = self.audio_ms
            events.append(
                self._event(
                    "response.output_audio.delta",
                    **self._where(),
                    content_index=0,
                    delta=base64.b64encode(chunk).decode("ascii"),
                )
            )
        due = math.ceil(self._chunk_index * len(self._words) / len(self._chunks))
        if due > self._words_sent:
            text = " ".join(self._words[self._words_sent : due])
            if self._words_sent:
                text = " " + text
            self._words_sent = due
            self.record.transcript += text
            kind = (
                "response.output_text.delta"
                if self._text_only
                else "response.output_audio_transcript.delta"
            )
            events.append(self._event(kind, **self._where(), content_index=0, delta=text))
        return events

    def item(self, *, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        """The assistant output item as the wire shows it (never with audio)."""
        return {
            "id": self.item_id,
            "type": "message",
            "object": "realtime.item",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def final_content(self) -> list[dict[str, Any]]:
        """The output item's content as it stands: the transcript (or text) sent so far."""
        if self._text_only:
            return [{"type": "output_text", "text": self.record.transcript}]
        return [{"type": "output_audio", "transcript": self.record.transcript}]

    def finish(self, *, cancelled: bool) -> list[dict[str, Any]]:
        """The closing events, up to ``response.done``.

        Args:
            cancelled: True when the client cancelled: the item ends ``incomplete``
                and the response ``cancelled`` (reason ``client_cancelled``).
        """
        text = self.record.transcript
        where = {**self._where(), "content_index": 0}
        events: list[dict[str, Any]]
        if self._text_only:
            events = [
                self._event("response.output_text.done", **where, text=text),
                self._event(
                    "response.content_part.done", **where, part={"type": "text", "text": text}
                ),
            ]
        else:
            events = [
                self._event("response.output_audio.done", **where),
                self._event("response.output_audio_transcript.done", **where, transcript=text),
                self._event(
                    "response.content_part.done",
                    **where,
                    part={"type": "audio", "transcript": text},
                ),
            ]
        item = self.item(
            status="incomplete" if cancelled else "completed", content=self.final_content()
        )
        events.append(self._event("response.output_item.done", **self._index(), item=item))
        if self.in_conversation:
            events.append(
                self._event(
                    "conversation.item.done", previous_item_id=self._previous_item_id, item=item
                )
            )
        status = "cancelled" if cancelled else "completed"
        self.record.status = status
        response = self._response(status, output=[item])
        if cancelled:
            response["status_details"] = {"type": "cancelled", "reason": "client_cancelled"}
        response["usage"] = self._usage()
        events.append(self._event("response.done", response=response))
        return events

    def fail(self, error: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of a response that failed before producing anything.

        Args:
            error: ``type``, ``code`` and ``message`` for ``status_details.error``.

        Returns:
            ``response.created`` and ``response.done`` with status ``failed``.
        """
        self.record.status = "failed"
        done = self._response("failed", output=[])
        done["status_details"] = {"type": "failed", "error": dict(error)}
        return [
            self._event("response.created", response=self._response("in_progress", output=[])),
            self._event("response.done", response=done),
        ]

    def _index(self) -> dict[str, Any]:
        """Where an output item sits: its response and position (one item: index 0)."""
        return {"response_id": self.id, "output_index": 0}

    def _where(self) -> dict[str, Any]:
        """Where a content part or delta sits: its response, position and item."""
        return {**self._index(), "item_id": self.item_id}

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": new_id("event_"), **fields}

    def _response(self, status: str, *, output: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": None,
            "output": output,
            "conversation_id": self._conversation_id,
            "output_modalities": ["text"] if self._text_only else ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": dict(self._format), "voice": self._voice}},
            "usage": None,
            "metadata": None,
        }

    def _usage(self) -> dict[str, Any]:
        # Rough figures of the right shape: ~20 audio tokens a second out, a token a word.
        text_tokens = len(self.record.transcript.split())
        audio_tokens = int(self.audio_ms / 50)
        output_tokens = text_tokens + audio_tokens
        return {
            "total_tokens": self._input_tokens + output_tokens,
            "input_tokens": self._input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {
                "text_tokens": 0,
                "audio_tokens": self._input_tokens,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        }
