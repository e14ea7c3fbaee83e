"""HTTP errors at the WebSocket handshake, shaped like the upstream's own."""

from __future__ import annotations

import json
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response


def http_error(
    connection: ServerConnection, status: HTTPStatus, message: str, code: str | None
) -> Response:
    """A JSON error response, as the Realtime API sends before refusing an upgrade.

    Args:
        connection: the connection being handshaken.
        status: the HTTP status, e.g. 401.
        message: the human-readable reason; never a secret.
        code: the API's error code, e.g. ``invalid_api_key``.
    """
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response
