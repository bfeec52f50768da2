"""The pages people work in: inbox, case page, starting a case, attachments.

Two blueprints: ``hexie`` (every page; sign-in required) and ``hexie_assets`` (CSS,
JS and icons from ``web/static``, also for the sign-in page). Handlers stay thin:
every read goes through :class:`hexie.workflows.queries.CaseQueries`, every change through
:class:`hexie.workflows.service.WorkflowService`, which enforce roles and org units.
"""
from __future__ import annotations

from .blueprint import OPEN_ENDPOINTS, assets, bp  # noqa: F401
from .common import template_helpers

from . import (case, dashboard, exports, files, funds, inbox, incidents, notices, printing,  # noqa: E402,F401
               protection, reports, start, workday)  # (routes register on import)

__all__ = ["bp", "assets", "template_helpers"]
