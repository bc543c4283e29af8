"""The fleet page shows agent versions and the newest rollout's progress, in headless Chromium."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlmodel import Session, select

from gateway.store import SqliteStore
from kits.wire import CommandReply
from server.agent_releases import add_release
from server.app import create_app
from server.cli import add_global_admin
from server.device_commands import apply_reply
from server.rollouts import start_rollout
from server.runner import ServerThread
from server.settings import ServerSettings
from server.tables import DeviceRow, OrganisationRow, RolloutTargetRow
from tests.server.test_web_pages import check, watch

pytestmark = pytest.mark.browser

PASSWORD = "a long admin password"


def _wheel(version: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr(
            f"iot_suitcase-{version}.dist-info/METADATA", f"Name: iot-suitcase\nVersion: {version}\n"
        )
    return buffer.getvalue()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """Four devices on two agent versions, one opted out, and a rollout stopped by its canary."""
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'r.db'}", store=str(tmp_path / "s.db"), alert_interval_s=0
    )
    now = time.time()
    with SqliteStore(settings.store), ServerThread(create_app(settings), "127.0.0.1", 0) as running:
        with Session(running.app.state.resources.engine) as session:
            add_global_admin(session, "root@example.org", PASSWORD, now=now)
            org = OrganisationRow(slug="aarhus", name="Aarhus", created_at=now)
            session.add(org)
            session.flush()
            for i, version in enumerate(("0.2.0", "0.1.0", "0.1.0", "0.1.0")):
                session.add(
                    DeviceRow(
                        id=f"aarhus-pi-{i}",
                        org_id=org.id or 0,
                        registered_at=now,
                        online=True,
                        last_seen=now,
                        agent_version=version,
                        updates_opt_out=i == 3,
                    )
                )
            release = add_release(session, "iot_suitcase-0.3.0-py3-none-any.whl", _wheel("0.3.0"), now)
            session.flush()
            rollout = start_rollout(
                session, release, now, base_url="https://suitcase.example.org", canaries=["aarhus-pi-1"]
            )
            session.commit()
            target = rollout.id
        with Session(running.app.state.resources.engine) as session:
            canary = session.exec(
                select(RolloutTargetRow).where(RolloutTargetRow.rollout_id == target)
            ).first()
            assert canary is not None and canary.command_id is not None
            reply = CommandReply(
                id=canary.command_id,
                ok=False,
                error="update to 0.3.0 rolled back: agent 0.3.0 exited with code 1 1.2 s after it started",
            )
            topic = "suitcase/v1/aarhus/aarhus-pi-1/cmd/update/reply"
            assert apply_reply(session, topic, reply.model_dump_json().encode(), now + 5) is not None
        yield running


def test_the_fleet_page_shows_versions_and_a_stopped_rollout(
    browser: Any, server: ServerThread, screenshot_dir: Path
) -> None:
    """Test that the fleet page counts the agent versions, names each device's version and whether it
    takes updates, and shows the rollout stopped by its canary with the reason, accessible (axe)
    on a desktop and a phone."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        login = context.request.post(
            f"{server.url}/api/v1/auth/login", data={"email": "root@example.org", "password": PASSWORD}
        )
        assert login.ok, login.text()
        page = context.new_page()
        errors = watch(page)
        page.goto(f"{server.url}/fleet")
        expect(page.locator("#fleet-versions")).to_contain_text("0.2.0: 1")
        expect(page.locator("#fleet-versions")).to_contain_text("0.1.0: 3")
        rollout = page.locator("#fleet-rollout")
        expect(rollout.locator("h2")).to_have_text("Agent update 0.3.0: stopped")
        expect(rollout).to_contain_text("canaries: 0 of 1 updated, 1 failed")
        expect(rollout).to_contain_text("a share: 0 of 1 updated")
        expect(rollout).to_contain_text("1 opted out")
        expect(rollout).to_contain_text("canary device aarhus-pi-1 failed: update to 0.3.0 rolled back")
        expect(page.locator('tr[data-device="aarhus-pi-3"]')).to_contain_text(
            "agent 0.1.0 · takes no updates"
        )
        check(page, errors, screenshot_dir, "fleet-rollout", phone=True)
    finally:
        context.close()
