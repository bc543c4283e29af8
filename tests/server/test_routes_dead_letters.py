"""Tests of server/api/routes/dead_letters.py."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gateway.store import DeadLetter, SqliteStore
from server.api.routes.dead_letters import PAYLOAD_PREVIEW_CHARS
from tests.server.data import NOW

TOPIC = "suitcase/v1/aarhus/dev-a/telemetry"


def test_dead_letters_newest_first_with_payload_text(client: TestClient, store: SqliteStore) -> None:
    """Test that dead letters are listed newest first with code, reason and payload as text."""
    store.write_dead_letters(
        [
            DeadLetter(NOW - 60, TOPIC, b"not json", "not_json", "payload is not JSON"),
            DeadLetter(NOW - 5, TOPIC, b"\xff\xfe[1]", "not_json", "payload is not JSON"),
        ]
    )
    body = client.get("/api/v1/dead-letters").json()
    assert body["count"] == 2
    newest, oldest = body["data"]
    assert newest["received_at"] == NOW - 5 and newest["payload"] == "\ufffd\ufffd[1]"
    assert oldest == {
        "received_at": NOW - 60,
        "received_at_iso": "2025-06-15T15:05:40.000Z",
        "topic": TOPIC,
        "code": "not_json",
        "reason": "payload is not JSON",
        "payload": "not json",
        "payload_bytes": 8,
        "payload_truncated": False,
    }


def test_long_payload_is_truncated_and_limit_applies(client: TestClient, store: SqliteStore) -> None:
    """Test that a big payload is cut to a preview, and limit caps the list."""
    big = b"[" + b"0," * 40_000 + b"0]"
    store.write_dead_letters([DeadLetter(NOW - i, TOPIC, big, "oversize", "too big") for i in range(3)])
    body = client.get("/api/v1/dead-letters", params={"limit": 2}).json()
    assert body["count"] == 2
    letter = body["data"][0]
    assert len(letter["payload"]) == PAYLOAD_PREVIEW_CHARS
    assert letter["payload_truncated"] is True and letter["payload_bytes"] == len(big)


def test_bad_limit_is_422(client: TestClient) -> None:
    """Test that limit must be 1..1000."""
    for limit in ("0", "1001", "ten"):
        response = client.get("/api/v1/dead-letters", params={"limit": limit})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "limit"]
