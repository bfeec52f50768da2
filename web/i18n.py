"""Chinese first, English second: gettext catalogs, one per language, under ``translations/``.

``t(key)`` returns the text for the current locale; ``label(Label)`` does the same for
texts that come from process definitions (those stay ``{zh, en}`` data in the YAML). The
message ids are stable keys (``case.voted``), never shown: ``translations/messages.pot``
lists them, ``translations/zh_CN/LC_MESSAGES/messages.po`` and ``.../en/...`` translate
them, with the tools translators use (Poedit, pybabel, Weblate). The ``.po`` files are read
and compiled in memory when Hexie starts: there is no compiled file to forget. The locale
is the session's choice (the language switch, ``POST /lang/en``), else the person's stored
choice, else the browser's ``Accept-Language`` (zh or en), else ``HEXIE_DEFAULT_LOCALE``.
Numbers, money and dates are formatted by Babel for the locale.
"""
from __future__ import annotations

from io import BytesIO
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from flask import current_app, g, has_request_context, request, session

LOCALES = ("zh", "en")
DEFAULT_LOCALE = "zh"

#: Where the catalogs live, and the gettext locale of each of ours.
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
GETTEXT_LOCALES = {"zh": "zh_CN", "en": "en"}


def catalog_files(locale: str) -> list[Path]:
    """The ``.po`` files of one locale: ``messages.po`` first, then one per concern
    (``paper.po``, ``runtime.po``, ...) in name order; each has its template ``<name>.pot``."""
    folder = TRANSLATIONS / GETTEXT_LOCALES[locale] / "LC_MESSAGES"
    rest = sorted(p for p in folder.glob("*.po") if p.name != "messages.po")
    return [folder / "messages.po", *rest]


def read_catalog(locale: str):
    """All of one locale's messages as one babel catalog; a message id in two files is an error."""
    merged = None
    seen: dict[str, str] = {}
    for path in catalog_files(locale):
        with open(path, "rb") as po:
            part = read_po(po, locale=GETTEXT_LOCALES[locale])
        if merged is None:
            merged = part
            seen = {m.id: path.name for m in part if m.id}
            continue
        for message in part:
            if not message.id:
                continue
            if message.id in seen:
                raise RuntimeError(f"{message.id!r} is in both {seen[message.id]} and {path.name}")
            seen[message.id] = path.name
            merged[message.id] = message
    return merged


def _load(locale: str) -> tuple[Translations, dict[str, str]]:
    catalog = read_catalog(locale)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain="messages"), {m.id: m.string for m in catalog if m.id and m.string}


_TRANSLATIONS: dict[str, Translations] = {}
_TEXTS: dict[str, dict[str, str]] = {}
for _locale in LOCALES:
    _TRANSLATIONS[_locale], _TEXTS[_locale] = _load(_locale)

#: key -> (zh, en), read-only: for the few messages that must carry both languages at once
#: (error bodies, logs) and for code that is handed a locale instead of reading the request's.
CATALOG: Mapping[str, tuple[str, str]] = MappingProxyType(
    {key: (zh, _TEXTS["en"].get(key, zh)) for key, zh in _TEXTS["zh"].items()})



def default_locale() -> str:
    """``HEXIE_DEFAULT_LOCALE`` of the current app when it is one of ours, else zh."""
    try:
        value = current_app.config.get("HEXIE_DEFAULT_LOCALE")
    except RuntimeError:  # no app
        value = None
    return value if value in LOCALES else DEFAULT_LOCALE


def browser_locale() -> str | None:
    """The best of our locales for the request's ``Accept-Language`` (``zh-CN`` counts as zh)."""
    if not has_request_context() or not request.accept_languages:
        return None
    return request.accept_languages.best_match(LOCALES)


def get_locale() -> str:
    """The current request's locale: the session's choice, else the person's stored choice,
    else Accept-Language, else HEXIE_DEFAULT_LOCALE."""
    if not has_request_context():
        return default_locale()
    cached = g.get("hexie_locale")
    if cached:
        return cached
    locale = session.get("lang")
    if locale not in LOCALES:
        locale = None
        try:
            from .state import current_actor
            actor = current_actor()
        except Exception:  # no extension (e.g. a bare error page): stay with the default
            actor = None
        if actor is not None and getattr(actor, "locale", None) in LOCALES:
            locale = actor.locale
    g.hexie_locale = locale or browser_locale() or default_locale()
    return g.hexie_locale


def babel_locale() -> str:
    """The current locale as Babel names it (``zh_CN``, ``en``), for numbers and dates."""
    return GETTEXT_LOCALES[get_locale()]


def t(key: str, **params: Any) -> str:
    """The catalog text for ``key`` in the current locale, formatted with ``params``.

    A key missing from the catalogs shows itself (and tests/test_i18n.py fails on it).
    """
    text = _TRANSLATIONS[get_locale()].gettext(key)
    return text.format(**params) if params else text


def text_in(locale: str, key: str, **params: Any) -> str:
    """The catalog text for ``key`` in ``locale`` (for code that is given its locale)."""
    text = _TRANSLATIONS[locale if locale in LOCALES else DEFAULT_LOCALE].gettext(key)
    return text.format(**params) if params else text


def both(key: str, **params: Any) -> str:
    """"中文 / English" for a catalog key, for messages that must carry both (logs, flashes)."""
    zh, en = CATALOG[key]
    return f"{zh.format(**params)} / {en.format(**params)}"


def label(value: Any, fallback: str = "") -> str:
    """A definition text (``hexie.workflows.spec.Label`` or a plain string) in the current locale."""
    if value is None:
        return fallback
    getter = getattr(value, "get", None)
    if callable(getter) and hasattr(value, "zh"):
        return value.get(get_locale())
    return str(value)


def error_text(err: Any) -> str:
    """A HexieError's message in the current locale (``.zh`` or ``.en``)."""
    return err.en if get_locale() == "en" else err.zh


def detail_text(message: Any) -> str:
    """One field error from the engine ("中文 / English") in the current locale."""
    text = str(message)
    if " / " in text:
        zh, _, en = text.partition(" / ")
        return en if get_locale() == "en" else zh
    return text
