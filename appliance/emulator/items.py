"""Retrieving and truncating stored conversation items, as the real service answers."""

from __future__ import annotations

import base64
from typing import Any

from appliance.emulator.checks import Problem
from appliance.emulator.wire import Item, server_event

__all__ = ["retrieve", "truncate"]


def retrieve(item: Item | None, item_id: str) -> list[dict[str, Any]] | Problem:
    """Answer ``conversation.item.retrieve``: the item with its audio, base64-encoded.

    Args:
        item: The stored item, or None if there is none with that id.
        item_id: The id asked for.
    """
    if item is None:
        return Problem(
            "item_retrieve_invalid_item_id",
            f"Error retrieving item: the item with id '{item_id}' does not exist.",
            "item_id",
        )
    wire = dict(item.wire)
    wire["content"] = [
        {**part, "audio": base64.b64encode(item.audio).decode("ascii")}
        if part.get("type") in ("input_audio", "output_audio")
        else part
        for part in wire.get("content", [])
    ]
    return [server_event("conversation.item.retrieved", item=wire)]


def truncate(item: Item | None, message: dict[str, Any]) -> list[dict[str, Any]] | Problem:
    """Answer ``conversation.item.truncate``: cut an assistant item's audio at ``audio_end_ms``.

    Args:
        item: The stored item, or None if there is none with that id.
        message: The schema-valid client event.
    """
    item_id: str = message["item_id"]
    if item is None:
        return Problem(
            "item_truncate_invalid_item_id",
            f"Item with item_id not found: {item_id}",
            "item_id",
        )
    parts = item.wire.get("content", [])
    if item.wire.get("role") != "assistant" or not any(
        part.get("type") == "output_audio" for part in parts
    ):
        return Problem(
            "unsupported_content_type",
            "Only assistant messages with audio content can be truncated.",
            "item_id",
        )
    if message["content_index"] >= len(parts):
        return Problem(
            "invalid_value", "Invalid 'content_index': no such content part.", "content_index"
        )
    end_ms: int = message["audio_end_ms"]
    if end_ms > item.audio_ms:
        return Problem(
            None,
            f"Audio content of {int(item.audio_ms)}ms is already shorter than {end_ms}ms",
            None,
        )
    # The unheard part of the transcript is dropped, in proportion to the audio.
    # New dicts: events already sent (and recorded) share the old ones.
    kept = end_ms / item.audio_ms if item.audio_ms else 0.0
    content = []
    for part in parts:
        transcript = part.get("transcript")
        if part.get("type") == "output_audio" and transcript:
            words = transcript.split(" ")
            part = {**part, "transcript": " ".join(words[: int(len(words) * kept)])}
        content.append(part)
    item.wire = {**item.wire, "content": content}
    step = item.sample_bytes
    item.audio = item.audio[: int(len(item.audio) * kept) // step * step]
    item.audio_ms = float(end_ms)
    return [
        server_event(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=message["content_index"],
            audio_end_ms=end_ms,
        )
    ]
