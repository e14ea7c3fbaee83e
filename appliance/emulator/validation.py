"""The GA client events as checks: what the emulator accepts, and how it words a refusal.

Objects are allowlists, so every beta-era key (``session.modalities``,
``session.voice``, ``session.input_audio_format``, ...) is an
``unknown_parameter``; the event is then dropped whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from appliance.emulator.checks import (
    Check,
    Problem,
    anything,
    array,
    bad_value,
    boolean,
    by_json_type,
    const,
    integer,
    mapping,
    nullable,
    number,
    obj,
    string,
    tagged,
    wrong_type,
)

__all__ = ["CLIENT_EVENT_TYPES", "ITEM", "SESSION", "VOICES", "Problem", "validate_client_event"]

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
"""Built-in voices of the GA API."""


def _modalities(value: Any, path: str) -> Problem | None:
    problem = array(string("text", "audio"))(value, path)
    if problem is not None:
        return problem
    if value not in (["audio"], ["text"]):
        return Problem(
            "invalid_value",
            f"Invalid modalities: {value}. Supported combinations are: ['text'] and ['audio'].",
            path,
        )
    return None


_FORMAT = tagged(
    "type",
    {
        "audio/pcm": obj({"type": string(), "rate": const(24_000)}),
        "audio/pcmu": obj({"type": string()}),
        "audio/pcma": obj({"type": string()}),
    },
)
_COMMON_VAD = {"type": string(), "create_response": boolean(), "interrupt_response": boolean()}
_TURN_DETECTION = nullable(
    tagged(
        "type",
        {
            "server_vad": obj(
                {
                    **_COMMON_VAD,
                    "threshold": number(minimum=0.0, maximum=1.0),
                    "prefix_padding_ms": integer(minimum=0),
                    "silence_duration_ms": integer(minimum=0),
                    "idle_timeout_ms": nullable(integer(minimum=0)),
                }
            ),
            "semantic_vad": obj(
                {**_COMMON_VAD, "eagerness": string("low", "medium", "high", "auto")}
            ),
        },
    )
)
_TRANSCRIPTION = nullable(
    obj(
        {
            "model": string(),
            "language": string(),
            "languages": array(string()),
            "prompt": string(),
            "keywords": array(string()),
            "delay": string("minimal", "low", "medium", "high", "xhigh"),
        }
    )
)
_NOISE_REDUCTION = nullable(
    obj({"type": string("near_field", "far_field"), "strength": number(minimum=0, maximum=1)})
)
_VOICE = by_json_type(string=string(*VOICES), object=obj({"id": string()}, required=("id",)))
_AUDIO = obj(
    {
        "input": obj(
            {
                "format": _FORMAT,
                "noise_reduction": _NOISE_REDUCTION,
                "transcription": _TRANSCRIPTION,
                "turn_detection": _TURN_DETECTION,
            }
        ),
        "output": obj(
            {"format": _FORMAT, "voice": _VOICE, "speed": number(minimum=0.25, maximum=1.5)}
        ),
    }
)
_FUNCTION_TOOL = obj(
    {"type": string(), "name": string(), "description": string(), "parameters": anything()}
)
_MCP_TOOL = obj(
    {
        "type": string(),
        "server_label": string(),
        "server_url": string(),
        "server_description": string(),
        "connector_id": string(),
        "authorization": string(),
        "headers": nullable(mapping(string())),
        "allowed_tools": anything(),
        "allowed_callers": anything(),
        "require_approval": anything(),
        "defer_loading": boolean(),
        "tunnel_id": string(),
    },
    required=("server_label",),
)
_TOOLS = array(tagged("type", {"function": _FUNCTION_TOOL, "mcp": _MCP_TOOL}))
_TOOL_CHOICE = by_json_type(
    string=string("auto", "none", "required"),
    object=tagged(
        "type",
        {
            "function": obj({"type": string(), "name": string()}, required=("name",)),
            "mcp": obj(
                {"type": string(), "server_label": string(), "name": string()},
                required=("server_label",),
            ),
        },
    ),
)
_TRACING = by_json_type(
    null=anything(),
    string=string("auto"),
    object=obj({"workflow_name": string(), "group_id": string(), "metadata": anything()}),
)
_TRUNCATION = by_json_type(
    string=string("auto", "disabled"),
    object=tagged(
        "type",
        {
            "retention_ratio": obj(
                {
                    "type": string(),
                    "retention_ratio": number(minimum=0.0, maximum=1.0),
                    "token_limits": obj({"post_instructions": integer(minimum=0)}),
                },
                required=("retention_ratio",),
            )
        },
    ),
)
_PROMPT = nullable(
    obj(
        {"id": string(), "version": string(), "variables": mapping(anything())},
        required=("id",),
    )
)
_MAX_OUTPUT_TOKENS = by_json_type(integer=integer(minimum=1, maximum=4096), string=string("inf"))
_REASONING = obj({"effort": string("minimal", "low", "medium", "high", "xhigh")})

SESSION = obj(
    {
        "type": string("realtime"),
        "model": string(),
        "instructions": string(),
        "output_modalities": _modalities,
        "audio": _AUDIO,
        "max_output_tokens": _MAX_OUTPUT_TOKENS,
        "tools": _TOOLS,
        "tool_choice": _TOOL_CHOICE,
        "tracing": _TRACING,
        "truncation": _TRUNCATION,
        "prompt": _PROMPT,
        "include": array(string("item.input_audio_transcription.logprobs")),
        # In the SDK's GA types; only reasoning models such as gpt-realtime-2 use them.
        "reasoning": _REASONING,
        "parallel_tool_calls": boolean(),
    },
    required=("type",),
)
"""The GA ``session`` object of ``session.update`` (type ``realtime``)."""

_ITEM_COMMON = {
    "id": string(),
    "type": string(),
    "object": string("realtime.item"),
    "status": string("completed", "incomplete", "in_progress"),
}
_INPUT_TEXT = obj({"type": string(), "text": string()}, required=("text",))
_MESSAGE = tagged(
    "role",
    {
        "user": obj(
            {
                **_ITEM_COMMON,
                "role": string(),
                "content": array(
                    tagged(
                        "type",
                        {
                            "input_text": _INPUT_TEXT,
                            "input_audio": obj(
                                {
                                    "type": string(),
                                    "audio": string(),
                                    "transcript": nullable(string()),
                                },
                                required=("audio",),
                            ),
                            "input_image": obj(
                                {
                                    "type": string(),
                                    "image_url": string(),
                                    "detail": string("auto", "low", "high"),
                                },
                                required=("image_url",),
                            ),
                        },
                    )
                ),
            },
            required=("content",),
        ),
        "assistant": obj(
            {
                **_ITEM_COMMON,
                "role": string(),
                "content": array(
                    tagged(
                        "type",
                        {
                            "output_text": obj(
                                {"type": string(), "text": string()}, required=("text",)
                            ),
                            "output_audio": obj(
                                {
                                    "type": string(),
                                    "audio": string(),
                                    "transcript": nullable(string()),
                                }
                            ),
                        },
                    )
                ),
            },
            required=("content",),
        ),
        "system": obj(
            {
                **_ITEM_COMMON,
                "role": string(),
                "content": array(tagged("type", {"input_text": _INPUT_TEXT})),
            },
            required=("content",),
        ),
    },
)
ITEM = tagged(
    "type",
    {
        "message": _MESSAGE,
        "function_call": obj(
            {**_ITEM_COMMON, "call_id": string(), "name": string(), "arguments": string()},
            required=("name", "arguments"),
        ),
        "function_call_output": obj(
            {**_ITEM_COMMON, "call_id": string(), "output": string()},
            required=("call_id", "output"),
        ),
    },
)
"""A conversation item a client may create: messages and function call items."""

_RESPONSE = obj(
    {
        "audio": obj({"output": obj({"format": _FORMAT, "voice": _VOICE})}),
        "conversation": string(),
        "input": array(ITEM),
        "instructions": string(),
        "max_output_tokens": _MAX_OUTPUT_TOKENS,
        "metadata": nullable(mapping(string())),
        "output_modalities": _modalities,
        "parallel_tool_calls": boolean(),
        "prompt": _PROMPT,
        "reasoning": _REASONING,
        "tool_choice": _TOOL_CHOICE,
        "tools": _TOOLS,
    }
)
_EVENT_ID = {"type": string(), "event_id": nullable(string())}
_ITEM_ID = obj({**_EVENT_ID, "item_id": string()}, required=("item_id",))

_CLIENT_EVENTS: dict[str, Check] = {
    "session.update": obj({**_EVENT_ID, "session": SESSION}, required=("session",)),
    "input_audio_buffer.append": obj({**_EVENT_ID, "audio": string()}, required=("audio",)),
    "input_audio_buffer.commit": obj(_EVENT_ID),
    "input_audio_buffer.clear": obj(_EVENT_ID),
    "output_audio_buffer.clear": obj(_EVENT_ID),
    "response.create": obj({**_EVENT_ID, "response": _RESPONSE}),
    "response.cancel": obj({**_EVENT_ID, "response_id": string()}),
    "conversation.item.create": obj(
        {**_EVENT_ID, "previous_item_id": nullable(string()), "item": ITEM},
        required=("item",),
    ),
    "conversation.item.delete": _ITEM_ID,
    "conversation.item.retrieve": _ITEM_ID,
    "conversation.item.truncate": obj(
        {
            **_EVENT_ID,
            "item_id": string(),
            "content_index": integer(minimum=0),
            "audio_end_ms": integer(minimum=0),
        },
        required=("item_id", "content_index", "audio_end_ms"),
    ),
}

CLIENT_EVENT_TYPES = tuple(_CLIENT_EVENTS)
"""The eleven client event types of the GA protocol."""


def validate_client_event(message: Mapping[str, Any]) -> Problem | None:
    """Check a parsed client event against the GA schema.

    Args:
        message: The client event, a parsed JSON object.

    Returns:
        The first problem found, or None when the event is valid.
    """
    if "type" not in message:
        return Problem("missing_required_parameter", "Missing required parameter: 'type'.", "type")
    kind = message["type"]
    if not isinstance(kind, str):
        return wrong_type(kind, "type", "a string")
    check = _CLIENT_EVENTS.get(kind)
    if check is None:
        return bad_value(kind, "type", CLIENT_EVENT_TYPES)
    return check(dict(message), "")
