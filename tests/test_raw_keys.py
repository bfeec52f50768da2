"""No page shows a raw message key: the main pages for several people, in both languages.

A missing catalog entry shows its key (``t('tab.team')`` -> ``tab.team``). This test reads
every text a person sees on the page (text nodes, and the attributes read out or shown
on hover: title, aria-label, placeholder, alt, value of buttons) and fails on anything
shaped like a message key: lowercase dotted words whose first word is one of the
catalog's own prefixes (``tab``, ``admin``, ``case``...). Source code shown on purpose
(the definition editor's YAML in ``<pre>``/``<textarea>``/``<code>``) is not page text.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from hexie.web import i18n

from .test_web import new_aid_case, new_complaint
from .web_helpers import make_web_env

#: The first word of every message key the catalog knows (and the admin's, once imported).
KEY_SHAPE = re.compile(r"(?<![\w./-])([a-z][a-z0-9_]*)(?:\.[a-z0-9_]+)+(?![\w/-])")
SHOWN_ATTRIBUTES = ("title", "aria-label", "placeholder", "alt", "data-confirm")
SKIPPED = ("script", "style", "pre", "textarea", "code")


class _Text(HTMLParser):
    """The texts a reader meets on the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in SKIPPED:
            self.skip += 1
        for name, value in attrs:
            if value and (name in SHOWN_ATTRIBUTES or (name == "value" and tag in ("button", "input")
                                                      and dict(attrs).get("type") in ("submit", "button"))):
                self.texts.append(value)

    def handle_endtag(self, tag):
        if tag in SKIPPED and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip and data.strip():
            self.texts.append(data)


def raw_keys(html: str, prefixes: set[str]) -> list[str]:
    parser = _Text()
    parser.feed(html)
    found = []
    for text in parser.texts:
        for match in KEY_SHAPE.finditer(text):
            if match.group(1) in prefixes:
                found.append(match.group(0))
    return found


def _prefixes() -> set[str]:
    return {key.split(".", 1)[0] for key in i18n.CATALOG if "." in key}


def test_the_key_finder_finds_a_raw_key():
    prefixes = {"tab", "admin"}
    html = ('<p>tab.team <span title="admin.nav.users">x</span></p><pre>tab.shown_on_purpose</pre>'
            '<p>poor_mother_aid.yaml v1.2 e.g. ok</p>')
    assert raw_keys(html, prefixes) == ["tab.team", "admin.nav.users"]


PAGES = {
    "vr1": ["/", "/?view=available", "/?view=overdue", "/?view=escalated", "/cases", "/start",
            "/start/poor_mother_aid", "/start/elder_support", "{aid}", "/away"],
    "tc1": ["/", "/?view=available", "/cases", "/start", "{aid}", "/reports"],
    "cc1": ["/", "/cases", "/start/dv_complaint", "{complaint}"],
    "cm1": ["/", "/?view=overdue", "/cases", "{aid}", "{complaint}", "/reports", "/reports/money",
            "/reports/ledger", "/admin/", "/admin/approvals", "/admin/tasks", "/admin/away"],
    "fo1": ["/", "/reports/money", "/reports/ledger"],
    "admin": ["/", "/admin/", "/admin/processes", "/admin/processes/poor_mother_aid",
              "/admin/processes/dv_complaint/edit", "/admin/users", "/admin/users/vr1", "/admin/units",
              "/admin/units/t01", "/nowhere"],
}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_page_shows_a_raw_message_key(session_factory, tmp_path, lang):
    env = make_web_env(session_factory, tmp_path)
    ids = {"aid": f"/cases/{new_aid_case(env)}", "complaint": f"/cases/{new_complaint(env)}"}
    seen = 0
    problems = []
    for username, paths in PAGES.items():
        client = env.client(username)
        client.get(f"/lang/{lang}")
        prefixes = _prefixes()          # after the first page: the admin's keys are in too
        for path in paths:
            path = path.format(**ids)
            response = client.get(path, follow_redirects=True)
            if response.status_code == 404 and path != "/nowhere":
                continue                # a page this app does not have (or she may not see)
            html = response.get_data(as_text=True)
            assert ('lang="en"' if lang == "en" else 'lang="zh-CN"') in html, (username, path)
            seen += 1
            problems += [(username, path, key) for key in raw_keys(html, prefixes)]
    assert seen >= 35
    assert problems == []
