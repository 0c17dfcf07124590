"""The console's two languages: Chinese (default) and English, and how a request picks one.

Owns the message catalogs (``locales/zh.json``, ``locales/en.json``), the ``t(key)`` lookup used by
templates (a Jinja global that reads the request's language from the template context) and the rule
for choosing a language: the ``hy_lang`` cookie, else the signed-in user's ``locale``, else Chinese.
Must not know about pages or database rows.

Why flat JSON catalogs rather than gettext/Babel: the console has two languages and a few hundred
short labels that are keyed by meaning (``member.phone``, ``status.active``), not by English source
text; JSON is edited by hand, diffed line by line, loaded without a compile step (no ``.mo`` files in
the build) and checked by a plain test that both catalogs hold the same keys and every key used in a
template exists. Plural rules and date formats, Babel's strengths, are not needed by these pages.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
LANG_COOKIE = "hy_lang"
LOCALES_DIR = Path(__file__).parent / "locales"


@lru_cache
def catalog(lang: str) -> dict[str, str]:
    """The messages of one language (read once per process)."""
    with (LOCALES_DIR / f"{lang}.json").open(encoding="utf-8") as fh:
        data: dict[str, str] = json.load(fh)
    return data


def translate(lang: str, key: str, **params: Any) -> str:
    """The message for ``key`` in ``lang``; falls back to Chinese, then to the key itself so a missing
    label shows up on the page instead of breaking it."""
    text = catalog(lang if lang in LANGUAGES else DEFAULT_LANGUAGE).get(key)
    if text is None:
        text = catalog(DEFAULT_LANGUAGE).get(key, key)
    return text.format(**params) if params else text


def choose_language(cookie: str | None, user_locale: str | None = None) -> str:
    """The cookie wins, then the user's preference, then the default."""
    for candidate in (cookie, user_locale):
        if candidate in LANGUAGES:
            return str(candidate)
    return DEFAULT_LANGUAGE


@pass_context
def t(context: Context, key: str, **params: Any) -> str:
    """Jinja global: ``{{ t('member.phone') }}`` in the language of the page being rendered."""
    return translate(context.get("lang", DEFAULT_LANGUAGE), key, **params)


@pass_context
def t_opt(context: Context, prefix: str, value: str | None) -> str:
    """Label of an enumerated value (``t_opt('status', 'active')``); unknown values show as they are."""
    if value is None or value == "":
        return "—"
    lang = context.get("lang", DEFAULT_LANGUAGE)
    key = f"{prefix}.{value}"
    text = catalog(lang if lang in LANGUAGES else DEFAULT_LANGUAGE).get(key)
    return text if text is not None else str(value)
