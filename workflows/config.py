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


def audit_key() -> bytes:
    """The key of the audit chain's HMACs: ``$HEXIE_AUDIT_KEY``, else a key generated once and
    kept in the instance folder (``audit_key``, mode 0600). Never in the database: whoever can
    write there still cannot recompute the chain."""
    key = os.environ.get("HEXIE_AUDIT_KEY")
    if key:
        return key.encode("utf-8")
    path = instance_dir() / "audit_key"
    if not path.exists():
        fresh = path.with_name(f"audit_key.{os.getpid()}.{secrets.token_hex(4)}")
        fresh.write_text(secrets.token_hex(32))
        fresh.chmod(0o600)
        try:
            os.link(fresh, path)        # atomic: two processes starting at once keep one key
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
    return path.read_text().strip().encode("utf-8")


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


# --- the settings a host may also give as app.config keys (interfaces.md, "Configuration")

#: name -> default. Hexie's own app reads each from the environment; a host sets the same
#: names in ``app.config`` (the extension fills in what the host left out from here).
SETTINGS: dict[str, str | None] = {
    "HEXIE_SITE_NAME": None,              # None: 县妇联业务办理系统 / County Women's Federation casework
    "HEXIE_DEFAULT_LOCALE": "zh",
    "HEXIE_TIMEZONE": "Asia/Shanghai",
    "HEXIE_LOGIN_VIEW": None,             # None: Hexie's own /login (its own app), else a 401
}


def setting(name: str) -> str | None:
    """``$NAME`` when set and not empty, else the default of :data:`SETTINGS`."""
    return os.environ.get(name) or SETTINGS[name]


def environment_settings() -> dict[str, str]:
    """The settings given in the environment (for ``create_app``'s config)."""
    return {name: os.environ[name] for name in SETTINGS if os.environ.get(name)}
