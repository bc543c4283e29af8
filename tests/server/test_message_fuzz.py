"""Fuzz of the server's consumers of untrusted messages: status and meta at the listener, command
replies, claim polls, and every request body (issue #11, items 4 and 6).

The listener's handlers are called directly, 10,000 inputs each (``make fuzz``: ten times more),
against the registry on SQLite and on a real PostgreSQL: none raises, and what they stored is
served back by the API without a server error. Claim polls and request bodies go through the app:
a bad body is a 4xx with a message, never a 5xx.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlmodel import Session

from server.api.routes.enrollment import PollBody, poll
from server.app import _safe_error, create_app
from server.device_commands import apply_reply
from server.listener import apply_message
from server.settings import ServerSettings
from server.tables import DeviceCommandRow, DeviceRow
from tests.fuzzing import JsonFuzzer, fuzz_count
from tests.server.data import NOW
from tests.server.world import World

DEVICE = "city-a-fuzz-1"
COMMAND = "cmd-fuzz-1"


@dataclass
class Fuzzed:
    client: TestClient
    world: World
    engine: object
    divisor: int  # of the number of inputs

    def count(self, base: int) -> int:
        return fuzz_count(base // self.divisor)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fuzzed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """The app on a fresh registry (SQLite, and a real PostgreSQL), with one device of city-a.

    The SQLite registry lives in memory-backed /dev/shm where there is one: 10,000 commits on a
    disk that syncs each would measure the disk, not the handlers.
    """
    root = tmp_path_factory.mktemp("fuzzed")
    shm = Path("/dev/shm")
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    if request.param == "postgres":
        import psycopg

        server: str = request.getfixturevalue("postgres_server")
        name = f"fuzz_{os.getpid()}"
        admin = server.replace("postgresql+psycopg", "postgresql") + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        registry_url = f"{server}/{name}"

        def cleanup() -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    else:
        where = Path(tempfile.mkdtemp(dir=shm, prefix="suitcase-fuzz-")) if shm.is_dir() else root
        registry_url = f"sqlite:///{where}/registry.db"
        if where != root:
            cleanup = lambda: shutil.rmtree(where, ignore_errors=True)  # noqa: E731
    settings = ServerSettings(
        registry_url=registry_url,
        store=str(root / "store.db"),
        alert_interval_s=0,
        open_reads=False,
        guess_limit_per_min=1_000_000,
    )
    try:
        with TestClient(create_app(settings, clock=lambda: NOW)) as client:
            world = World.build(client)
            engine = client.app.state.resources.engine  # type: ignore[attr-defined]
            with Session(engine) as session:
                session.add(DeviceRow(id=DEVICE, org_id=world.orgs["a"], registered_at=NOW))
                session.flush()
                session.add(
                    DeviceCommandRow(
                        command_id=COMMAND,
                        device_id=DEVICE,
                        org_id=world.orgs["a"],
                        name="config",
                        args={"version": 1},
                        state="sent",
                        created_at=NOW,
                        expires_at=NOW + 86400,
                    )
                )
                session.commit()
            # 10,000 inputs per consumer on SQLite; PostgreSQL, slower to commit, checks its own
            # refusals (NUL, 32-bit integers, JSON without NaN) on a fifth of them.
            yield Fuzzed(client, world, engine, 1 if request.param == "sqlite" else 5)
    finally:
        cleanup()


def _served(fuzzed: Fuzzed) -> None:
    """What the handlers stored is served back: the device list answers 200."""
    answer = fuzzed.world.call("a-viewer", "GET", "/devices")
    assert answer.status_code == 200, answer.text[:500]
    assert any(d["device"] == DEVICE for d in answer.json()["data"])


def _status_or_meta(f: JsonFuzzer) -> str:
    r = f.rng
    pick = r.random()
    if pick < 0.35:
        return f.object_of(["state", "since", "agent"])
    if pick < 0.8:
        return f.object_of(
            [
                "agent",
                "kit_profile",
                "time",
                "uptime_s",
                "clock_synced",
                "publish_interval_s",
                "outbox",
                "sensors",
                "missing",
                "unexpected",
                "backlog",
                "oldest_pending",
                "counters",
            ]
        )
    return f.value()


@pytest.mark.timeout(600)
def test_status_and_meta_fuzz_never_escape_the_listener(fuzzed: Fuzzed) -> None:
    """Test that 10,000 fuzzed status/meta payloads each apply or are refused, and nothing raises."""
    count = fuzzed.count(10_000)
    fuzzer = JsonFuzzer(seed=4, device=DEVICE, now=NOW)
    topics = [f"suitcase/v1/city-a/{DEVICE}/status", f"suitcase/v1/city-a/{DEVICE}/meta"]
    escapes: list[tuple[bytes, str]] = []
    applied = 0
    started = time.monotonic()
    with Session(fuzzed.engine) as session:  # type: ignore[call-overload]
        for i, payload in enumerate(fuzzer.objects(count, _status_or_meta)):
            try:
                applied += apply_message(session, topics[i % 2], payload, NOW + i)
            except Exception as exc:
                session.rollback()
                escapes.append((payload[:300], repr(exc)[:300]))
            if i % 2000 == 1999:
                _served(fuzzed)
    assert not escapes, escapes[:5]
    assert applied > count // 10  # the fuzz reaches the registry, not only the parser
    _served(fuzzed)
    print(f"{count} status/meta in {time.monotonic() - started:.1f} s, {applied} applied")


@pytest.mark.timeout(600)
def test_command_reply_fuzz_never_escapes(fuzzed: Fuzzed) -> None:
    """Test that 10,000 fuzzed replies on cmd/config/reply each record or are refused, and nothing raises."""
    count = fuzzed.count(10_000)
    fuzzer = JsonFuzzer(seed=5, device=DEVICE, now=NOW)

    def reply(f: JsonFuzzer) -> str:
        text = f.object_of(["id", "ok", "result", "error"])
        if f.rng.random() < 0.5 and text.startswith('{"id":'):
            text = '{"id":"' + COMMAND + '",' + text.partition(",")[2] if "," in text else text
        return text

    topic = f"suitcase/v1/city-a/{DEVICE}/cmd/config/reply"
    escapes: list[tuple[bytes, str]] = []
    recorded = 0
    with Session(fuzzed.engine) as session:  # type: ignore[call-overload]
        for i, payload in enumerate(fuzzer.objects(count, reply)):
            try:
                row = apply_reply(session, topic, payload, NOW + i)
                if row is not None:  # answered: make it wait for a reply again, for the next one
                    recorded += 1
                    row.state = "sent"
                    session.add(row)
                    session.commit()
            except Exception as exc:
                session.rollback()
                escapes.append((payload[:300], repr(exc)[:300]))
    assert not escapes, escapes[:5]
    assert recorded > 0


def _answer_of(raw: bytes, handle: Callable[[PollBody], object]) -> int:
    """What the app answers ``raw`` on a route taking PollBody, as FastAPI parses it; raises on an escape."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # FastAPI: 422 (JSON decode error) or 400
        return 400
    try:
        body = PollBody.model_validate(data)
    except ValidationError as exc:
        answer = [_safe_error(e) for e in exc.errors()]
        json.dumps(answer, allow_nan=False).encode("utf-8")  # the 422's body can be sent
        return 422
    try:
        handle(body)
    except HTTPException as exc:
        assert 400 <= exc.status_code < 500 and exc.detail, exc
        return exc.status_code
    return 200


@pytest.mark.timeout(600)
def test_claim_poll_fuzz_answers_4xx_never_5xx(fuzzed: Fuzzed) -> None:
    """Test that 10,000 fuzzed claim-poll bodies each get 200 or a 4xx with a message, never a 5xx.

    The route is called directly (as FastAPI would, body parsed then validated); 300 more go
    through the whole app.
    """
    count = fuzzed.count(10_000)
    fuzzer = JsonFuzzer(seed=6, now=NOW)

    def poll_body(f: JsonFuzzer) -> str:
        if f.rng.random() < 0.7:
            text = f.object_of(["claim_code", "code", "agent"])
            if f.rng.random() < 0.3:  # a code of the right length, so the route itself runs
                text = '{"code":"' + "".join(f.rng.choice("SCEN-01lo\\u00e9") for _ in range(12)) + '"}'
            return text
        return f.value()

    resources = fuzzed.client.app.state.resources  # type: ignore[attr-defined]
    request = Request(
        {"type": "http", "client": ("192.0.2.7", 1), "headers": [], "method": "POST", "path": "/"}
    )
    failures: list[tuple[bytes, str]] = []
    statuses: dict[int, int] = {}
    with Session(fuzzed.engine) as session:  # type: ignore[call-overload]

        def handle(body: PollBody) -> object:
            return poll(body, request, session, resources, lambda: NOW)

        for raw in fuzzer.objects(count, poll_body):
            try:
                status = _answer_of(raw, handle)
            except Exception as exc:
                session.rollback()
                failures.append((raw[:200], repr(exc)[:300]))
                continue
            statuses[status] = statuses.get(status, 0) + 1
    assert not failures, failures[:5]
    assert statuses.get(404, 0) > 0 and statuses.get(422, 0) > 0, statuses
    for raw in fuzzer.objects(300, poll_body):
        answer = fuzzed.client.post(
            "/api/v1/claims/poll", content=raw, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code < 500 and (answer.status_code == 200 or "detail" in answer.json()), (
            raw[:200],
            answer.text[:300],
        )


BAD_BODIES: dict[str, bytes] = {
    "not JSON": b"{not json",
    "empty": b"",
    "invalid UTF-8": b'{"name": "\xff\xfe"}',
    "deep nesting": b"[" * 50_000 + b"]" * 50_000,
    "deep object": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "huge int": b'{"id": ' + b"9" * 4000 + b', "org_id": ' + b"9" * 4000 + b"}",
    "too many digits": b'{"org_id": ' + b"9" * 5000 + b"}",
    "NaN": b'{"lat": NaN, "lon": Infinity, "interval_s": -Infinity}',
    "NUL": b'{"name": "a\\u0000b", "slug": "a\\u0000", "email": "x\\u0000@y.z"}',
    "lone surrogate": b'{"name": "\\ud800", "slug": "\\udfff", "claim_code": "SC-\\ud800\\ud800\\ud800"}',
    "array": b"[1, 2, 3]",
    "string": b'"hello"',
    "null": b"null",
    "wrong types": b'{"name": 5, "org_id": "x", "public": "yes", "lat": [], "due_at": {}}',
    "duplicate keys": b'{"name": "a", "name": 5}',
    "big string": b'{"name": "' + b"x" * 200_000 + b'"}',
}


@pytest.mark.timeout(600)
def test_every_request_body_refuses_bad_input_with_a_4xx(fuzzed: Fuzzed) -> None:
    """Test that every POST/PUT/PATCH operation answers each bad body with a 4xx and a message, not a 5xx."""
    spec = fuzzed.client.get("/api/v1/openapi.json").json()
    failures: list[str] = []
    operations = 0
    for path, methods in spec["paths"].items():
        for method in ("post", "put", "patch"):
            if method not in methods:
                continue
            operations += 1
            concrete = path.replace("{", "").replace("}", "")  # ids become names: still routed
            concrete = "/".join("1" if part.endswith("id") else part for part in concrete.split("/"))
            for name, body in BAD_BODIES.items():
                answer = fuzzed.client.request(
                    method.upper(),
                    concrete,
                    content=body,
                    headers={**fuzzed.world.root, "Content-Type": "application/json"},
                )
                bad = answer.status_code >= 500 or (
                    answer.status_code >= 400 and "detail" not in _json_or_empty(answer.text)
                )
                if bad:
                    failures.append(
                        f"{method.upper()} {path} with {name}: {answer.status_code} {answer.text[:200]}"
                    )
    assert operations >= 20
    assert not failures, failures[:10]


def _json_or_empty(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
