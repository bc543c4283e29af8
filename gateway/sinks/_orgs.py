"""Each city's readings in its own store: a sink that takes only some organisations' readings.

``orgs=aarhus,odense`` on any sink URL keeps only those organisations' readings (their own
InfluxDB); ``skip_orgs=aarhus`` keeps all others (the default store beside it). The server reads
each organisation where its readings went (``org_stores`` setting, ``gateway.store.routed``).
A sink with ``orgs=`` keeps no dead letters (a dead letter may have no organisation); one with
``skip_orgs=`` (the default store) keeps them as it would without the option.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kits.errors import ConfigError
from kits.wire import Record

if TYPE_CHECKING:
    from gateway.sinks import Sink
    from gateway.store.base import DeadLetter

__all__ = ["OrgFilterSink", "SkipOrgsLettersSink", "split_org_options", "wrap_for_orgs"]


def split_org_options(url: str) -> tuple[str, frozenset[str], frozenset[str]]:
    """Return ``url`` without ``orgs``/``skip_orgs``, and the two sets of org slugs."""
    if "://" not in url or "?" not in url:
        return url, frozenset(), frozenset()
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    only = frozenset(o for k, v in options if k == "orgs" for o in v.split(",") if o)
    skip = frozenset(o for k, v in options if k == "skip_orgs" for o in v.split(",") if o)
    if only and skip:
        raise ConfigError(
            f"sink {url.split('?', 1)[0]}: orgs= and skip_orgs= together: give a sink one of them "
            "(orgs= on an organisation's own store, skip_orgs= on the default store)"
        )
    rest = urlencode([(k, v) for k, v in options if k not in ("orgs", "skip_orgs")], safe="{}")
    return urlunsplit(parts._replace(query=rest)), only, skip


class OrgFilterSink:
    """Passes on only the readings of some organisations (``only``) or of all but some (``skip``)."""

    def __init__(self, inner: Sink, only: frozenset[str], skip: frozenset[str]) -> None:
        self.inner = inner
        self.only = only
        self.skip = skip
        which = f"orgs={','.join(sorted(only))}" if only else f"skip_orgs={','.join(sorted(skip))}"
        self.name = f"{inner.name}[{which}]"
        self.required = inner.required

    def _takes(self, org: str) -> bool:
        return org in self.only if self.only else org not in self.skip

    def name_writer(self, writer: str) -> None:
        from gateway.sinks import NamedWriterSink

        if isinstance(self.inner, NamedWriterSink):
            self.inner.name_writer(writer)

    def open(self) -> None:
        self.inner.open()

    def write(self, batch: Sequence[Record]) -> None:
        mine = [r for r in batch if self._takes(r.org)]
        if mine:
            self.inner.write(mine)

    def close(self) -> None:
        self.inner.close()


class SkipOrgsLettersSink(OrgFilterSink):
    """The default store beside organisations' own: all but some orgs' readings, and dead letters."""

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        self.inner.write_dead_letters(letters)  # type: ignore[attr-defined]


def wrap_for_orgs(sink: Sink, only: frozenset[str], skip: frozenset[str]) -> Sink:
    """``sink`` itself, or wrapped to take only the organisations ``only`` / all but ``skip``."""
    from gateway.sinks import DeadLetterSink

    if only:
        return OrgFilterSink(sink, only, skip)
    if skip:
        return (
            SkipOrgsLettersSink(sink, only, skip)
            if isinstance(sink, DeadLetterSink)
            else OrgFilterSink(sink, only, skip)
        )
    return sink
