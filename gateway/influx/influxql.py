"""Quoting for InfluxQL statements, shared by the sinks and the store readers."""

from __future__ import annotations

__all__ = ["quote_ident", "quote_literal"]


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted InfluxQL identifier (a database, measurement, tag or field)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a single-quoted InfluxQL string literal (a tag value to compare with)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
