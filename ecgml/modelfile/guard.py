"""An ASGI guard in front of MLflow's scoring app (``python -m ecgml.serve``, ``make serve``).

MLflow's scoring server parses a request's JSON before the model sees it and rewrites every
exception the model raises, so three things cannot be fixed inside the pyfunc:

- a body of any size is read whole (a 200 MB body took a minute to time out): the guard
  refuses one over ``max_body_bytes`` (``ECGML_SERVE_MAX_BODY_MB``, default 16) as soon as
  its ``Content-Length`` or its bytes say so;
- a body nested 100,000 levels deep crashed the JSON parser (HTTP 500): the guard counts the
  nesting of ``[`` / ``{`` outside strings without parsing, and refuses beyond ``max_depth``;
- a refused request's 400 answer carried a multi-line dump of the request before the reason:
  the guard rewrites MLflow's 400 body to ``{"error_code": …, "message": <one line>}``.

Everything else (``/ping``, ``/version``, good requests) passes through untouched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Default body cap (MB), overridden by ``ECGML_SERVE_MAX_BODY_MB``.
DEFAULT_MAX_BODY_MB = 16.0
#: Deepest JSON nesting a request may have (a request is a table: a few levels suffice).
MAX_JSON_DEPTH = 32
MAX_BODY_ENV = "ECGML_SERVE_MAX_BODY_MB"


def max_body_bytes_from_env() -> int:
    """``ECGML_SERVE_MAX_BODY_MB`` in bytes (a positive number of MB; else the default)."""
    text = os.environ.get(MAX_BODY_ENV, "")
    try:
        mb = float(text) if text else DEFAULT_MAX_BODY_MB
    except ValueError:
        raise ValueError(f"{MAX_BODY_ENV}={text!r} must be a number of MB (e.g. 16)") from None
    if not 0 < mb < 1e6:
        raise ValueError(f"{MAX_BODY_ENV}={text!r} must be a positive number of MB (e.g. 16)")
    return int(mb * 1024 * 1024)


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body``'s ``[`` / ``{`` nesting (outside strings) goes beyond ``limit``."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def one_line_reason(message: str) -> str:
    """ecgml's reason out of MLflow's error message: the text after its last ``Error:`` (MLflow
    prefixes the whole request), on one line."""
    reason = message.rsplit("Error:", 1)[-1] if "Error:" in message else message
    return " ".join(reason.split())[:500] or "bad request"


def error_body(message: str, code: str = "BAD_REQUEST") -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


class GuardedScoring:
    """The ASGI app: ``app`` (MLflow's scoring app) behind the checks of the module docstring."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_depth: int = MAX_JSON_DEPTH):
        self.app, self.max_body_bytes, self.max_depth = app, int(max_body_bytes), int(max_depth)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("path") != "/invocations":
            await self.app(scope, receive, send)
            return
        body, refusal = await self._read_body(scope, receive)
        if refusal is None and json_depth_exceeds(body, self.max_depth):
            refusal = f"the request nests deeper than {self.max_depth} levels: send a flat table"
        if refusal is not None:
            await _answer(send, 400, error_body(refusal))
            return
        await self.app(scope, _replay(body), _OneLineErrors(send))

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, str | None]:
        too_big = (
            f"the request is larger than {self.max_body_bytes / 1048576:g} MB "
            f"({MAX_BODY_ENV}): send fewer rows per request"
        )
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return b"", too_big
        chunks, size = [], 0
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                return b"", "the client disconnected"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _OneLineErrors:
    """``send`` that holds back a 400 answer of the inner app and rewrites its message."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0
        self.parts: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            if self.status != 400:
                await self.send(message)
            return
        if self.status != 400:
            await self.send(message)
            return
        self.parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            await _answer(self.send, 400, _rewritten(b"".join(self.parts)))


def _rewritten(body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return error_body(one_line_reason(body.decode("utf-8", "replace")))
    if not isinstance(data, dict):
        return error_body("bad request")
    code = str(data.get("error_code") or "BAD_REQUEST")
    return error_body(one_line_reason(str(data.get("message", ""))), code)
