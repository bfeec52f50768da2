"""The JSON API, mounted at ``/api/v1`` (interfaces.md, "HTTP API").

``bp`` is registered by :class:`hexie.web.extension.Hexie`, CSRF-exempt (Bearer tokens, no
cookies). The blueprint reads ``current_app.extensions["hexie"]`` and needs only its
``"engine"``, ``"service"`` and ``"queries"`` entries.

Every answer that is not a success is ``{"error": {"code", "message", "details"}}``,
also for unknown URLs and methods under the prefix, whatever the host application
does with errors elsewhere.
"""
from __future__ import annotations

from .blueprint import bp

from . import openapi, views, paper  # noqa: E402,F401  (operations register on import)

__all__ = ["bp"]
