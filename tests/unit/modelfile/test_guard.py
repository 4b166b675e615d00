"""The ASGI guard of ``ecgml.serve``: body cap, nesting depth, one-line 400s (driven directly,
no server)."""

from __future__ import annotations

import asyncio
import json

import pytest

from ecgml.modelfile.guard import (
    GuardedScoring,
    json_depth_exceeds,
    max_body_bytes_from_env,
    one_line_reason,
)

MLFLOW_400 = {
    "error_code": "INVALID_PARAMETER_VALUE",
    "message": "Failed to predict data '                                            beat  r_index\n"
    "0  [0.1, 0.1, 0.1, ...]  125'. \nError: row 0: r_index=12.7 is not a sample of its 450 "
    "samples",
    "stack_trace": "Traceback (most recent call last):\n  ...",
}


class Inner:
    """A stand-in for MLflow's scoring app: records what reached it, answers ``status``."""

    def __init__(self, status: int = 200, body: dict | None = None) -> None:
        self.status, self.body, self.seen = status, body or {"predictions": []}, []

    async def __call__(self, scope, receive, send) -> None:
        message = await receive()
        self.seen.append(message.get("body", b""))
        payload = json.dumps(self.body).encode()
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": payload[:10], "more_body": True})
        await send({"type": "http.response.body", "body": payload[10:], "more_body": False})


def call(
    app, body: bytes, path: str = "/invocations", chunk: int = 1 << 16, declared: int | None = None
) -> tuple[int, dict]:
    headers = [(b"content-type", b"application/json")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    parts = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    queue = [
        {"type": "http.request", "body": p, "more_body": k < len(parts) - 1}
        for k, p in enumerate(parts)
    ]
    sent: list[dict] = []

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(payload)


def test_a_good_request_passes_through_untouched() -> None:
    inner = Inner()
    body = json.dumps({"dataframe_split": {"columns": ["beat"], "data": [[[0.1] * 450]]}})
    status, answer = call(GuardedScoring(inner, 1 << 20), body.encode(), chunk=100)
    assert status == 200 and answer == {"predictions": []}
    assert inner.seen == [body.encode()]  # reassembled from its chunks


def test_a_body_over_the_cap_is_refused_without_reaching_mlflow() -> None:
    inner = Inner()
    guard = GuardedScoring(inner, max_body_bytes=1000)
    status, answer = call(guard, b"[" + b"0," * 2000 + b"0]")
    assert status == 400 and "larger than" in answer["message"] and inner.seen == []
    status, answer = call(guard, b"[]", declared=200 * 1024 * 1024)  # the header alone says so
    assert status == 400 and "ECGML_SERVE_MAX_BODY_MB" in answer["message"] and inner.seen == []


def test_a_deeply_nested_body_is_refused_without_recursion() -> None:
    inner = Inner()
    deep = b"[" * 100_000 + b"]" * 100_000
    status, answer = call(GuardedScoring(inner, 10 << 20), deep)
    assert status == 400 and "nests deeper than 32" in answer["message"] and inner.seen == []
    assert not json_depth_exceeds(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 3)
    assert json_depth_exceeds(b'{"a": [[[1]]]}', 3)


def test_mlflows_400_is_rewritten_to_ecgmls_one_line_reason() -> None:
    status, answer = call(GuardedScoring(Inner(400, MLFLOW_400), 1 << 20), b"{}")
    assert status == 400
    reason = "row 0: r_index=12.7 is not a sample of its 450 samples"
    assert answer == {"error_code": "INVALID_PARAMETER_VALUE", "message": reason}
    assert one_line_reason("Encountered an unexpected error.\n  Verify") == (
        "Encountered an unexpected error. Verify"
    )


def test_other_paths_are_not_touched() -> None:
    inner = Inner(400, MLFLOW_400)
    status, answer = call(GuardedScoring(inner, 10), b"x" * 100, path="/ping")
    assert status == 400 and answer == MLFLOW_400  # not /invocations: passed as it is


@pytest.mark.parametrize(("value", "expected"), [("", 16 << 20), ("2", 2 << 20), ("0.5", 1 << 19)])
def test_the_body_cap_comes_from_the_environment(monkeypatch, value, expected) -> None:
    monkeypatch.setenv("ECGML_SERVE_MAX_BODY_MB", value)
    assert max_body_bytes_from_env() == expected
    monkeypatch.setenv("ECGML_SERVE_MAX_BODY_MB", "-1")
    with pytest.raises(ValueError, match="positive number of MB"):
        max_body_bytes_from_env()
