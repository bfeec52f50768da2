"""Hexie's table names inside someone else's database (host.md).

Every table Hexie creates is named ``hexie_…`` and its Alembic history lives in
``hexie_alembic_version``, so that a host's own ``users``, ``tasks`` or
``alembic_version`` never meet Hexie's. Releases up to 0.1 used bare names; a database
made by one is renamed in place by :func:`hexie.models.db.upgrade` (see
:func:`prefixed`), before its remaining migrations run.
"""
from __future__ import annotations

import re

PREFIX = "hexie_"
VERSION_TABLE = "hexie_alembic_version"
LEGACY_VERSION_TABLE = "alembic_version"

#: The tables of Hexie 0.1, under their bare names, longest first (so that
#: ``webhook_subscriptions`` is matched before any shorter name inside it).
LEGACY_TABLES = tuple(sorted((
    "org_units", "users", "role_assignments", "process_versions", "cases", "tasks", "votes",
    "timers", "audit_events", "ledger_entries", "attachments", "webhook_subscriptions",
    "webhook_deliveries",
), key=len, reverse=True))

_LEGACY_NAME = re.compile(r"(?<![a-z0-9])(?<!hexie_)(" + "|".join(LEGACY_TABLES) + r")(?![a-z0-9])")


def prefixed(name: str) -> str:
    """The name a 0.1 table, index, constraint or sequence has now.

    Every bare table name inside ``name`` gets the prefix, as the naming convention
    (:data:`hexie.models.base.NAMING_CONVENTION`) writes it: ``fk_tasks_case_id_cases``
    becomes ``fk_hexie_tasks_case_id_hexie_cases``, ``cases_id_seq`` becomes
    ``hexie_cases_id_seq``. Names already prefixed are left as they are.
    """
    return _LEGACY_NAME.sub(lambda m: PREFIX + m.group(1), name)
