"""Hexie (和谐): a workflow and approval engine, and a plugin for ERP-style Flask hosts.

Installed, the repository's folders are the subpackages ``hexie.workflows`` (the engine),
``hexie.models`` (tables and sessions) and ``hexie.web`` (the Flask app and extension); the
programmes in ``definitions/`` ship as package data (host.md). This file is the package's
``__init__``: setuptools maps the repository root to ``hexie`` (``package-dir`` in
pyproject.toml), which is why it sits at the top level.

What a host needs is importable from here; names are loaded on first use, so that
``import hexie.workflows`` does not pull in Flask.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

_PUBLIC = {
    "Hexie": "hexie.web.extension",
    "current_actor": "hexie.web.extension",
    "create_app": "hexie.web",
    "WorkflowMixin": "hexie.workflows.mixin",
    "Engine": "hexie.workflows.engine",
    "create_engine": "hexie.workflows.engine",
    "issue_token": "hexie.workflows.tokens",
    "Actor": "hexie.workflows.access",
    "HexieError": "hexie.workflows.errors",
    "NotFound": "hexie.workflows.errors",
    "Forbidden": "hexie.workflows.errors",
    "Conflict": "hexie.workflows.errors",
    "Invalid": "hexie.workflows.errors",
    "WorkflowLocked": "hexie.workflows.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'hexie' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
