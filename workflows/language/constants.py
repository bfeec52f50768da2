"""Names and fixed vocabularies of the definition language (field types, reserved names, files)."""
from __future__ import annotations

import re
from typing import Any


PathKey = tuple[Any, ...]          # ('states', 1, 'task', 'role')
ROLES_FILE = "roles.yaml"
#: What a role in roles.yaml may be marked as (host.md): data, so that no code names a role.
ROLE_FLAGS = ("manager", "overseer", "admin")
DEFINITION_SUFFIXES = (".yaml", ".yml")
PROCESS_KEY = re.compile(r"[a-z][a-z0-9_]*")
NUMBER_TYPES = ("integer", "decimal", "money")
DATE_TYPES = ("date", "datetime")
CHOICE_TYPES = ("choice", "multichoice")
TEXT_TYPES = ("text", "textarea")
MULTIPLE_TYPES = ("file", "user", "org_unit")
# Names a field may not take: the expression language reads them as something else.
RESERVED_NAMES = frozenset({"true", "false", "null", "actor", "case"})
