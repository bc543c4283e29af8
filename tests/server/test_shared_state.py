"""State shared by server replicas through the registry (server/shared.py): two app instances on
one registry database (SQLite file, and a real PostgreSQL) behave as one server.

- the login/claim guess limit counts failures made on either replica, and is pruned;
- the export limit counts exports started on either replica;
- each alert fires once and resolves once while both replicas run their alert loops;
- the alert round's lease: one holder at a time, taken over when its holder dies.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from server.alerts import ALERT_LEASE, ALERT_LEASE_S, evaluate
from server.app import create_app
from server.resources import Resources
from server.settings import ServerSettings
from server.shared import Lease, SharedGuessLimiter
from server.tables import AlertRow, AlertRuleRow, KitRow, LoanRow, OrganisationRow, OutboundMessageRow
from tests.waiting import wait_until


class Clock:
    """A clock the test moves; starts at real time (the alert loops compare with due dates)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def replicas(settings: ServerSettings, clock: Callable[[], float]) -> Iterator[tuple[TestClient, TestClient]]:
    """Two server app instances (two replicas) on the same registry."""
    with (
        TestClient(create_app(settings, clock=clock)) as one,
        TestClient(create_app(settings, clock=clock)) as two,
    ):
        yield one, two


def _resources(client: TestClient) -> Resources:
    resources: Resources = client.app.state.resources  # type: ignore[attr-defined]
    return resources


def _login(client: TestClient) -> int:
    return client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.org", "password": "wrong"}
    ).status_code


def test_the_guess_limit_holds_across_replicas(settings: ServerSettings) -> None:
    """Test that failed logins on either replica count together, and that the count is pruned."""
    clock = Clock()
    settings = settings.model_copy(update={"guess_limit_per_min": 3})
    with replicas(settings, clock) as (one, two):
        assert [_login(one), _login(two), _login(one)] == [401, 401, 401]
        assert (_login(two), _login(one)) == (429, 429)  # each replica refuses: 3 failures in all
        wait = two.post("/api/v1/auth/login", json={"email": "x@example.org", "password": "x"})
        assert wait.status_code == 429 and int(wait.headers["Retry-After"]) >= 60
        clock.now += 61
        assert _login(two) == 401  # the window passed: guessing again, on either replica
        guesses = _resources(one).guesses
        assert isinstance(guesses, SharedGuessLimiter)
        clock.now += 61
        guesses.retry_after("someone")  # the first call past a window prunes
        assert len(guesses) == 0, "failed guesses older than the window are kept"


def test_pruning_bounds_the_rows(settings: ServerSettings) -> None:
    """Test that 200 addresses failing over 2.5 minutes leave about one window of rows, not all."""
    from kits.catalog import load_catalog
    from server.db import create_registry_engine, init_registry

    engine = create_registry_engine(settings.registry_url)
    init_registry(engine, load_catalog(settings.catalog_dir), upgrade=True)
    clock = Clock()
    limiter = SharedGuessLimiter(engine, 3, clock, window_s=60.0)
    try:
        for minute in range(5):
            for address in range(40):
                limiter.failed(f"login:10.0.{minute}.{address}")
            clock.now += 30
        assert len(limiter) <= 2 * 40 + 1, "rows of past windows were not deleted"
        assert limiter.retry_after("login:10.0.4.7") == 0  # one failure: still allowed
    finally:
        engine.dispose()


def test_the_export_limit_holds_across_replicas(settings: ServerSettings) -> None:
    """Test that exports started on either replica count against one limit per client."""
    clock = Clock()
    settings = settings.model_copy(update={"export_per_min": 2, "open_reads": True})
    with replicas(settings, clock) as (one, two):
        url = "/api/v1/export/deployments/999999/readings"  # counted before the deployment is looked up
        codes = [one.get(url).status_code, two.get(url).status_code, one.get(url).status_code]
        assert codes == [404, 404, 429], codes


def _overdue_loan(engine: object, now: float) -> tuple[int, int]:
    """An organisation's loan, overdue, and a rule that alerts on it; return (loan id, rule id)."""
    with Session(engine) as session:  # type: ignore[call-overload]
        org = OrganisationRow(slug="replica-town", name="Replica town", created_at=now)
        session.add(org)
        session.commit()
        assert org.id is not None
        kit = KitRow(org_id=org.id, inventory_code="RT-1", profile_id="office", created_at=now)
        session.add(kit)
        session.commit()
        assert kit.id is not None
        loan = LoanRow(
            kit_id=kit.id, owner_org_id=org.id, org_id=org.id, borrower="school", starts_at=now - 7200,
            due_at=now - 3600,
        )  # fmt: skip
        rule = AlertRuleRow(
            org_id=org.id,
            name="loan overdue",
            kind="loan_overdue",
            webhooks=["https://hooks.example.org/replicas"],
            created_at=now,
        )
        session.add(loan)
        session.add(rule)
        session.commit()
        assert loan.id is not None and rule.id is not None
        return loan.id, rule.id


def _events(engine: object, event: str) -> int:
    with Session(engine) as session:  # type: ignore[call-overload]
        return len(session.exec(select(OutboundMessageRow).where(OutboundMessageRow.event == event)).all())


def test_each_alert_fires_once_and_resolves_once_across_replicas(settings: ServerSettings) -> None:
    """Test that with both replicas running their alert loop every 50 ms, an overdue loan fires one
    alert with one notification, and its return resolves it once."""
    settings = settings.model_copy(update={"alert_interval_s": 0.05})
    with replicas(settings, time.time) as (one, _two):
        engine = _resources(one).engine
        loan_id, rule_id = _overdue_loan(engine, time.time())
        wait_until(lambda: _events(engine, "firing"), 30, "the alert fired")
        rounds = [0]

        def counted() -> bool:  # both loops go on for a while: nothing fires again
            rounds[0] += 1
            return rounds[0] > 20

        wait_until(counted, 30, "more alert rounds", every=0.05)
        with Session(engine) as session:
            alerts = session.exec(select(AlertRow).where(AlertRow.rule_id == rule_id)).all()
            assert [a.state for a in alerts] == ["firing"]
            loan = session.get(LoanRow, loan_id)
            assert loan is not None
            loan.returned_at = time.time()
            session.add(loan)
            session.commit()
        wait_until(lambda: _events(engine, "resolved"), 30, "the alert resolved")
        time.sleep(1.0)  # twenty more rounds of each loop
        with Session(engine) as session:
            alerts = session.exec(select(AlertRow).where(AlertRow.rule_id == rule_id)).all()
            assert [a.state for a in alerts] == ["resolved"]
        assert (_events(engine, "firing"), _events(engine, "resolved")) == (1, 1)


def test_concurrent_rounds_never_double_fire(settings: ServerSettings) -> None:
    """Test that rounds started at the same instant on two replicas (8 threads) fire one alert."""
    settings = settings.model_copy(update={"alert_interval_s": 0})
    with replicas(settings, time.time) as (one, two):
        engine = _resources(one).engine
        _, rule_id = _overdue_loan(engine, time.time())
        start = threading.Barrier(8)
        results = []

        def round_of(client: TestClient) -> None:
            start.wait(60)
            results.append(evaluate(_resources(client), wait_s=30.0))

        threads = [threading.Thread(target=round_of, args=(c,)) for c in (one, two) * 4]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 8 and not any(r.skipped for r in results)
        assert sum(len(r.fired) for r in results) == 1
        with Session(engine) as session:
            assert len(session.exec(select(AlertRow).where(col(AlertRow.rule_id) == rule_id)).all()) == 1


def test_a_dead_holders_lease_is_taken_over(settings: ServerSettings) -> None:
    """Test that a round is skipped while another replica holds the lease, and runs once it expired."""
    clock = Clock()
    settings = settings.model_copy(update={"alert_interval_s": 0})
    with replicas(settings, clock) as (one, two):
        engine = _resources(one).engine
        _overdue_loan(engine, clock.now)
        dead = Lease(engine, ALERT_LEASE, "replica-that-died", ALERT_LEASE_S, clock)
        assert dead.acquire()
        assert not Lease(engine, ALERT_LEASE, "another", ALERT_LEASE_S, clock).acquire()
        assert evaluate(_resources(two)).skipped
        assert two.post("/api/v1/alerts/evaluate").status_code in (401, 503)
        clock.now += ALERT_LEASE_S + 1
        result = evaluate(_resources(two))
        assert not result.skipped and len(result.fired) == 1
        with Session(engine) as session:
            assert not dead.keep(session), "a holder whose lease was taken still thinks it holds it"


def test_lease_release_lets_the_next_holder_in(tmp_path: Path) -> None:
    """Test the lease's life: taken, refused to another, kept, released, taken by the other."""
    from kits.catalog import CATALOG_DIR, load_catalog
    from server.db import create_registry_engine, init_registry

    engine = create_registry_engine(f"sqlite:///{tmp_path / 'r.db'}")
    init_registry(engine, load_catalog(CATALOG_DIR), upgrade=True)
    clock = Clock()
    a, b = (Lease(engine, "job", name, 10.0, clock) for name in ("a", "b"))
    assert a.acquire() and a.acquire()  # again: still ours
    assert not b.acquire() and not b.acquire_within(0.3, every_s=0.1)
    with Session(engine) as session:
        assert a.keep(session)
        session.commit()
    a.release()
    assert b.acquire()
    with Session(engine) as session:
        assert not a.keep(session)
    engine.dispose()


def test_a_lease_past_its_expiry_is_kept_until_another_takes_it(tmp_path: Path) -> None:
    """Test that a holder slower than the lease still commits when nobody took the lease (no
    other holder worked meanwhile), and not once another has taken it; and that a dead holder
    blocks the alert rounds of the other replicas for at most ALERT_LEASE_S (a short lease: a
    replica killed mid-round once held every other replica's alerts back for five minutes)."""
    from kits.catalog import CATALOG_DIR, load_catalog
    from server.db import create_registry_engine, init_registry

    assert ALERT_LEASE_S <= 60.0
    engine = create_registry_engine(f"sqlite:///{tmp_path / 'r.db'}")
    init_registry(engine, load_catalog(CATALOG_DIR), upgrade=True)
    clock = Clock()
    slow, other = (Lease(engine, "job", name, 10.0, clock) for name in ("slow", "other"))
    assert slow.acquire()
    clock.now += 11.0  # its step outlived the lease; nobody else came
    with Session(engine) as session:
        assert slow.keep(session), "a lease nobody took was lost for nothing"
        session.commit()
    assert not other.acquire(), "keep did not extend the lease"
    clock.now += 11.0
    assert other.acquire()  # past expiry another may take it; from then on it is the other's
    with Session(engine) as session:
        assert not slow.keep(session)
    engine.dispose()
