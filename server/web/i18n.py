"""A tiny message catalogue for the pages: ``server/web/i18n/{en,da}.json``, flat keys.

The language is ``?lang=``, else the ``suitcase_lang`` cookie (set when ``?lang=`` is given), else
the best of ``Accept-Language``, else English. A missing Danish message falls back to English,
and a missing key shows the key itself (a test checks that neither happens).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "LANG_COOKIE", "Translator", "catalogue", "pick_language"]

I18N_DIR = Path(__file__).parent / "i18n"
LANGUAGES: tuple[str, ...] = ("en", "da")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "suitcase_lang"


@cache
def catalogue(lang: str) -> Mapping[str, str]:
    """Return the messages of ``lang`` (one of :data:`LANGUAGES`)."""
    data: dict[str, str] = json.loads((I18N_DIR / f"{lang}.json").read_text(encoding="utf-8"))
    return data


def _accept_language(header: str) -> str | None:
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            choices.append((-quality, index, primary))
    return min(choices)[2] if choices else None


def pick_language(request: Request) -> str:
    """Return the page language of ``request``."""
    asked = request.query_params.get("lang", "").lower()
    if asked in LANGUAGES:
        return asked
    cookie = request.cookies.get(LANG_COOKIE, "")
    if cookie in LANGUAGES:
        return cookie
    return _accept_language(request.headers.get("accept-language", "")) or DEFAULT_LANGUAGE


class Translator:
    """``t(key, **values)``: the message of ``key`` in the page language, formatted."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._messages = catalogue(lang)
        self._fallback = catalogue(DEFAULT_LANGUAGE)

    def __call__(self, key: str, /, **values: Any) -> str:
        text = self._messages.get(key) or self._fallback.get(key) or key
        return text.format(**values) if values else text

    def plural(self, key: str, count: int, /, **values: Any) -> str:
        """The message ``key.one`` or ``key.other`` by ``count``."""
        return self(f"{key}.{'one' if count == 1 else 'other'}", count=count, **values)
