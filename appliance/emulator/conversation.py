"""Per-connection protocol state of the emulator: client events in, server events out.

No I/O and no clock: the server feeds parsed client events to ``receive`` and
sends what it returns; it paces a response by calling ``advance``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import Any, Literal

from appliance.emulator import items
from appliance.emulator.replies import bytes_per_ms, chime, convert, sample_bytes
from appliance.emulator.responses import ActiveResponse, ResponseRecord
from appliance.emulator.session_config import SESSION_LIFETIME_S, default_session, merge_session
from appliance.emulator.validation import Problem, validate_client_event
from appliance.emulator.wire import Item, error_event, new_id

__all__ = ["MIN_COMMIT_MS", "Conversation"]

logger = logging.getLogger(__name__)

MIN_COMMIT_MS = 100
"""Least audio a commit accepts since the last commit or clear (milliseconds)."""

TONE_S = 1.2
"""Length of the ``tone`` reply (seconds)."""

SHORT_TONE_S = 0.4
"""Length of the ``echo`` reply when nothing was committed yet (seconds)."""


class Conversation:
    """One emulated Realtime session.

    Args:
        model: The model from the ``?model=`` query.
        reply: ``echo`` answers with the last committed audio, ``tone`` with a chime.
        created_at_s: Creation time, Unix seconds (gives ``expires_at``).
        lifetime_s: ``expires_at`` is this long after creation (seconds).
    """

    def __init__(
        self,
        model: str,
        *,
        reply: Literal["echo", "tone"],
        created_at_s: float,
        lifetime_s: float = SESSION_LIFETIME_S,
    ) -> None:
        self.session_id = new_id("sess_")
        self.model = model
        self.reply = reply
        self.config = default_session(
            session_id=self.session_id,
            model=model,
            created_at_s=created_at_s,
            lifetime_s=lifetime_s,
        )
        self.items: list[Item] = []
        self.buffer = bytearray()
        self.commits: list[bytes] = []
        """Audio of each successful commit, in order."""
        self.responses: list[ResponseRecord] = []
        """One record per response started, in order."""
        self.active: ActiveResponse | None = None
        self._failure: dict[str, Any] | None = None
        self._conversation_id = new_id("conv_")
        self._voice_locked = False
        self._handlers: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]] | Problem]] = {
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.clear": self._on_clear,
            "input_audio_buffer.commit": self._on_commit,
            "output_audio_buffer.clear": self._on_output_clear,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "conversation.item.create": self._on_item_create,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.retrieve": self._on_item_retrieve,
            "conversation.item.truncate": self._on_item_truncate,
        }

    def created(self) -> dict[str, Any]:
        """The ``session.created`` event that opens the session."""
        return self._event("session.created", session=dict(self.config))

    def receive(
        self, message: dict[str, Any], *, reject_update: bool = False
    ) -> list[dict[str, Any]]:
        """Handle one client event.

        Args:
            message: The parsed client event (a JSON object).
            reject_update: Answer a valid ``session.update`` with an error (fault).

        Returns:
            The server events to send, in order. ``response.created`` among them
            means a response started: call ``advance`` until it reports done.
        """
        raw_id = message.get("event_id")
        event_id = raw_id if isinstance(raw_id, str) else None
        problem = validate_client_event(message)
        if problem is None:
            kind: str = message["type"]
            result: list[dict[str, Any]] | Problem
            if kind == "session.update":
                result = self._on_session_update(message, reject_update=reject_update)
            else:
                result = self._handlers[kind](message)
            if not isinstance(result, Problem):
                return result
            problem = result
        logger.debug("rejecting %s: %s", message.get("type"), problem.message)
        return [error_event(problem, client_event_id=event_id)]

    def fail_next_response(self, error: dict[str, Any]) -> None:
        """Make the next ``response.create`` fail at once (a fault).

        Args:
            error: ``type``, ``code`` and ``message`` for ``status_details.error``.
        """
        self._failure = dict(error)

    def advance(self, response_id: str) -> tuple[list[dict[str, Any]], bool]:
        """Produce the next step of a streaming response.

        Args:
            response_id: The response the caller is pacing.

        Returns:
            The events to send, and whether more steps follow. A response that
            was cancelled or has ended gives ``([], False)``.
        """
        active = self.active
        if active is None or active.id != response_id:
            return [], False
        if not active.exhausted:
            events = active.step()
            if any(event["type"] == "response.output_audio.delta" for event in events):
                self._voice_locked = True
            self._sync_item(active)
            return events, True
        return self._end(active, cancelled=False), False

    # Client event handlers. Each gets a schema-valid event and returns the
    # events to send, or a Problem for an ``error``.

    def _on_session_update(
        self, message: dict[str, Any], *, reject_update: bool
    ) -> list[dict[str, Any]] | Problem:
        if reject_update:
            return Problem(
                "invalid_value",
                "Invalid 'session.audio.input.format': rejected by the emulator's "
                "reject_update fault.",
                "session.audio.input.format",
            )
        update: dict[str, Any] = message["session"]
        voice = update.get("audio", {}).get("output", {}).get("voice")
        if voice is not None and self._voice_locked and voice != self._voice():
            return Problem(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                "session.audio.output.voice",
            )
        self.config = merge_session(self.config, update)
        return [self._event("session.updated", session=dict(self.config))]

    def _on_append(self, message: dict[str, Any]) -> list[dict[str, Any]] | Problem:
        try:
            audio = base64.b64decode(message["audio"], validate=True)
        except (binascii.Error, ValueError):
            return Problem(
                "invalid_value", "Invalid 'audio'. Expected base64-encoded audio bytes.", "audio"
            )
        self.buffer += audio
        return []

    def _on_clear(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        self.buffer.clear()
        return [self._event("input_audio_buffer.cleared")]

    def _on_commit(self, message: dict[str, Any]) -> list[dict[str, Any]] | Problem:
        input_format = self.config["audio"]["input"]["format"]
        buffered_ms = len(self.buffer) / bytes_per_ms(input_format)
        if buffered_ms < MIN_COMMIT_MS:
            return Problem(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                None,
            )
        audio = bytes(self.buffer)
        self.buffer.clear()
        self.commits.append(audio)
        item_id = new_id("item_")
        previous = self.items[-1].id if self.items else None
        wire = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.items.append(
            Item(
                item_id,
                wire,
                audio=audio,
                audio_ms=buffered_ms,
                sample_bytes=sample_bytes(input_format),
            )
        )
        return [
            self._event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id),
            self._event("conversation.item.added", previous_item_id=previous, item=wire),
            self._event("conversation.item.done", previous_item_id=previous, item=wire),
        ]

    def _on_output_clear(self, message: dict[str, Any]) -> Problem:
        return Problem(
            None, "output_audio_buffer.clear is only supported for WebRTC and SIP sessions.", None
        )

    def _on_response_create(self, message: dict[str, Any]) -> list[dict[str, Any]] | Problem:
        if self.active is not None:
            return Problem(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
                None,
            )
        params: dict[str, Any] = message.get("response") or {}
        output = params.get("audio", {}).get("output", {})
        out_format = output.get("format") or self.config["audio"]["output"]["format"]
        modalities = params.get("output_modalities") or self.config["output_modalities"]
        in_conversation = params.get("conversation", "auto") != "none"
        last = self.commits[-1] if self.commits else None
        if self.reply == "echo" and last is not None:
            in_format = self.config["audio"]["input"]["format"]
            audio = convert(last, source=in_format, target=out_format)
            seconds = len(last) / bytes_per_ms(in_format) / 1000
            transcript = f"(echo of {seconds:.1f} s of audio)"
        else:
            length_s = TONE_S if self.reply == "tone" else SHORT_TONE_S
            audio = chime(length_s, audio_format=out_format)
            transcript = "(tone)"
        voice = output.get("voice", self._voice())
        failure, self._failure = self._failure, None
        active = ActiveResponse(
            new_id("resp_"),
            item_id=new_id("item_"),
            audio=audio,
            transcript=transcript,
            audio_format=out_format,
            voice=voice if isinstance(voice, str) else str(voice.get("id")),
            text_only=modalities == ["text"],
            conversation_id=self._conversation_id if in_conversation else None,
            previous_item_id=self.items[-1].id if self.items and in_conversation else None,
            input_tokens=int(sum(item.audio_ms for item in self.items) / 100),
        )
        if failure is not None:
            self.responses.append(active.record)
            return active.fail(failure)
        self.active = active
        self.responses.append(active.record)
        if active.in_conversation:
            wire = active.item(status="in_progress", content=[])
            size = sample_bytes(out_format)
            self.items.append(Item(active.item_id, wire, sample_bytes=size))
        return active.start()

    def _on_response_cancel(self, message: dict[str, Any]) -> list[dict[str, Any]] | Problem:
        active = self.active
        wanted = message.get("response_id")
        if active is None or (wanted is not None and wanted != active.id):
            return Problem(
                "response_cancel_not_active", "Cancellation failed: no active response found", None
            )
        return self._end(active, cancelled=True)

    def _on_item_create(self, message: dict[str, Any]) -> list[dict[str, Any]] | Problem:
        wire: dict[str, Any] = dict(message["item"])
        item_id = wire.get("id") or new_id("item_")
        if self._find(item_id) is not None:
            return Problem("invalid_value", f"Item with id '{item_id}' already exists.", "item.id")
        previous = message.get("previous_item_id")
        if previous is None:
            position = len(self.items)
        elif previous == "root":
            position = 0
        else:
            found = self._find(previous)
            if found is None:
                return Problem(
                    "invalid_value",
                    f"Error adding item: the previous item with id '{previous}' does not exist.",
                    "previous_item_id",
                )
            position = self.items.index(found) + 1
        audio = b""
        content = []
        for index, part in enumerate(wire.get("content", [])):
            part = dict(part)
            if "audio" in part:
                try:
                    audio += base64.b64decode(part.pop("audio"), validate=True)
                except (binascii.Error, ValueError):
                    return Problem(
                        "invalid_value",
                        "Invalid 'audio'. Expected base64-encoded audio bytes.",
                        f"item.content[{index}].audio",
                    )
                part.setdefault("transcript", None)
            content.append(part)
        if "content" in wire:
            wire["content"] = content
        wire.update(id=item_id, object="realtime.item", status="completed")
        in_format = self.config["audio"]["input"]["format"]
        item = Item(
            item_id,
            wire,
            audio=audio,
            audio_ms=len(audio) / bytes_per_ms(in_format),
            sample_bytes=sample_bytes(in_format),
        )
        after = self.items[position - 1].id if position > 0 else None
        self.items.insert(position, item)
        return [
            self._event("conversation.item.added", previous_item_id=after, item=wire),
            self._event("conversation.item.done", previous_item_id=after, item=wire),
        ]

    def _on_item_delete(self, message: dict[str, Any]) -> list[dict[str, Any]] | Problem:
        item = self._find(message["item_id"])
        if item is None:
            return Problem(
                "item_delete_invalid_item_id",
                f"Error deleting item: the item with id '{message['item_id']}' does not exist.",
                "item_id",
            )
        self.items.remove(item)
        return [self._event("conversation.item.deleted", item_id=item.id)]

    def _on_item_retrieve(self, message: dict[str, Any]) -> list[dict[str, Any]] | Problem:
        return items.retrieve(self._find(message["item_id"]), message["item_id"])

    def _on_item_truncate(self, message: dict[str, Any]) -> list[dict[str, Any]] | Problem:
        return items.truncate(self._find(message["item_id"]), message)

    # Helpers.

    def _end(self, active: ActiveResponse, *, cancelled: bool) -> list[dict[str, Any]]:
        events = active.finish(cancelled=cancelled)
        self._sync_item(active)
        self.active = None
        return events

    def _sync_item(self, active: ActiveResponse) -> None:
        """Mirror a response's progress into its item in the conversation."""
        item = self._find(active.item_id)
        if item is not None:
            status = {"completed": "completed", "cancelled": "incomplete"}
            wire_status = status.get(active.record.status, "in_progress")
            item.wire = active.item(status=wire_status, content=active.final_content())
            item.audio = active.sent_audio
            item.audio_ms = active.audio_ms

    def _find(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.id == item_id), None)

    def _voice(self) -> Any:
        return self.config["audio"]["output"]["voice"]

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": new_id("event_"), **fields}
