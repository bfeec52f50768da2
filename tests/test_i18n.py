"""The gettext catalogs (web/translations): complete, consistent, and every key the code uses is in them."""
from __future__ import annotations

import re
from pathlib import Path

from babel.messages.pofile import read_po

from hexie.web.i18n import CATALOG, TRANSLATIONS, read_catalog

WEB = Path(__file__).resolve().parent.parent / "web"
#: t('key') / t("key", ...) / both('key') / text_in(locale, 'key') with a literal key
KEY = r"""['"]([a-z][a-z0-9_]*(?:\.[a-z0-9_\-]+)+)['"]"""     # a whole key, not a prefix ('tab.' ~ view)
USED = re.compile(r"\b(?:t|both|_t)\(\s*" + KEY)
USED_IN = re.compile(r"\btext_in\([^,]+,\s*" + KEY)


def catalog(locale: str) -> dict[str, str]:
    return {m.id: m.string for m in read_catalog(locale) if m.id}


def test_both_languages_translate_every_message_of_the_template():
    ids = set()
    for template in TRANSLATIONS.glob("*.pot"):
        with open(template, "rb") as pot:
            ids |= {m.id for m in read_po(pot) if m.id}
    for locale in ("zh", "en"):
        messages = catalog(locale)
        assert set(messages) == ids, f"{locale}: {sorted(set(messages) ^ ids)[:10]}"
        assert all(text.strip() for text in messages.values()), locale


def test_each_concern_has_its_template_and_both_translations():
    templates = {p.stem for p in TRANSLATIONS.glob("*.pot")}
    for folder in ("zh_CN", "en"):
        assert {p.stem for p in (TRANSLATIONS / folder / "LC_MESSAGES").glob("*.po")} == templates, folder


def test_every_key_the_code_and_templates_name_is_in_the_catalogs():
    missing = {}
    for path in [*WEB.rglob("*.py"), *WEB.rglob("*.html")]:
        text = path.read_text(encoding="utf-8")
        for key in USED.findall(text) + USED_IN.findall(text):
            if key not in CATALOG:
                missing.setdefault(key, path.name)
    assert missing == {}


def test_placeholders_match_between_the_languages():
    zh, en = catalog("zh"), catalog("en")
    for key in zh:
        assert set(re.findall(r"\{(\w+)\}", zh[key])) == set(re.findall(r"\{(\w+)\}", en[key])), key


def test_chinese_is_chinese():
    """The zh catalog is written in Chinese (a copied English text would pass the other checks)."""
    han = re.compile(r"[\u4e00-\u9fff]")
    zh = catalog("zh")
    untranslated = [k for k, v in zh.items() if not han.search(v) and re.search(r"[a-zA-Z]{4,}", v)
                    and k not in {"app.name"}]
    assert len(untranslated) <= 5, untranslated
