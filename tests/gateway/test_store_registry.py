"""Tests of gateway/store/__init__.py: opening a store by URL or path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store import SqliteStore, StoreError, open_store


def test_plain_path_opens_sqlite(tmp_path: Path) -> None:
    """Test that a plain path (str or Path) opens the SQLite store at that path."""
    for path in (tmp_path / "a.db", str(tmp_path / "b.db")):
        store = open_store(path)
        assert isinstance(store, SqliteStore)
        assert store.path == Path(path)
        store.close()


def test_sqlite_url_absolute_and_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that sqlite:////abs and sqlite:///rel follow SQLAlchemy's convention."""
    store = open_store(f"sqlite:///{tmp_path}/abs.db")
    assert store.path == tmp_path / "abs.db"
    store.close()
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///rel.db")
    assert store.path == Path("rel.db")
    store.close()
    assert (tmp_path / "rel.db").exists()


@pytest.mark.parametrize("url", ["influxdb3://x", "postgres://db/x", "sqlite://", "sqlite:///"])
def test_bad_url_says_what_to_use(url: str) -> None:
    """Test that an unknown scheme or an empty sqlite URL is refused with a StoreError naming the fix."""
    with pytest.raises(StoreError, match="sqlite"):
        open_store(url)
