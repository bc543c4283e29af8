"""The URLs of sinks and stores: ``scheme://host:port/path?option=value``, options checked."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from kits.errors import ConfigError

__all__ = ["ServiceUrl"]


class ServiceUrl:
    """A parsed sink or store URL: ``scheme://host:port/path?option=value``.

    Options are read with :meth:`take`; :meth:`done` refuses any option left unread, so a
    misspelt option fails with the list of the right ones.
    """

    def __init__(self, url: str, *, what: str = "sink") -> None:
        self.url = url
        self.what = what
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port
        self.path = parts.path
        self._options = dict(parse_qsl(parts.query, keep_blank_values=True))
        self._known: list[str] = []

    def take(self, key: str, default: str) -> str:
        """Return option ``key`` (or ``default``) and mark it known."""
        self._known.append(key)
        return self._options.pop(key, default)

    def take_float(self, key: str, default: float) -> float:
        raw = self.take(key, str(default))
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigError(f"{self.what} {self.redacted}: {key}={raw!r} is not a number") from exc

    def take_bool(self, key: str, default: bool) -> bool:
        raw = self.take(key, "true" if default else "false").lower()
        if raw not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{self.what} {self.redacted}: {key}={raw!r}: use true or false")
        return raw in ("true", "1", "yes")

    def done(self) -> None:
        """Raise ConfigError naming any option that was not read."""
        if self._options:
            raise ConfigError(
                f"{self.what} {self.redacted}: unknown option(s) {', '.join(sorted(self._options))}: "
                f"{self.scheme} takes {', '.join(sorted(self._known))}"
            )

    @property
    def redacted(self) -> str:
        """The URL without secrets, fit for logs and errors."""
        return self.url.split("?", 1)[0]
