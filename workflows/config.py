"""Configuration from the environment (interfaces.md)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

# HEXIE_DATABASE_URL is read by hexie.models.database_url(), HEXIE_DEFINITIONS by
# hexie.workflows.loader.default_definitions_dir(); what is generated lives here.


def instance_dir() -> Path:
    """Where the app keeps what it generates: the secret key, uploaded files."""
    path = Path(os.environ.get("HEXIE_INSTANCE", "instance")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def secret_key() -> str:
    """$HEXIE_SECRET_KEY, else a key generated once and kept in the instance folder."""
    key = os.environ.get("HEXIE_SECRET_KEY")
    if key:
        return key
    path = instance_dir() / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()
