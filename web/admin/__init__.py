"""Manager and administrator pages, mounted at ``/admin``.

For managers (roles marked ``manager: true`` in roles.yaml: the federation's county leaders,
town chairs and administrators):

* ``/admin/`` — a start page with what waits for them;
* ``/admin/approvals`` — approvals waiting for me: tasks of states that need a
  county leader (or a town chair) or several votes, with the votes cast so far;
* ``/admin/tasks`` and ``/admin/tasks/<id>/reassign`` — the open work of my area, and
  giving a task to someone else who may take it (``WorkflowService.reassign``).

For everybody signed in: ``/admin/away`` — "I am away until …": sets ``away_until`` and
``delegate_to`` (new work then goes to the colleague) and hands my open tasks over with
``WorkflowService.delegate``.

For administrators (roles marked ``admin: true``): process definitions (list, read with line numbers,
edit in the browser with a server-side check that shows every diagnostic at its line and a
live diagram, publish as a new version), users (create, rename, deactivate, reset the
password, role assignments ``role@unit``) and org units (create, rename, move). People and
units change only through :func:`hexie.workflows.org.load_org`, so the rules of the org file
(known roles and levels, no cycles, re-pathing cases on a move) hold here too. Each
administrative change is recorded in the audit trail's case-less chain.

Every page checks the role (403 otherwise), every POST carries the CSRF token (the app's
CSRFProtect), and every text a person typed is escaped by the templates. Texts are Chinese
first, English second, through :func:`hexie.web.i18n.t` (its ``admin.*`` keys are in the catalogs, web/translations).

One blueprint, ``admin``, as before (endpoint names unchanged), its pages by concern:
``common`` (the blueprint, access checks, helpers), ``approvals`` (overview, approvals, team work),
``away`` (away and delegation), ``processes`` and ``source`` (definitions and the editor),
``people`` (users and units). Importing this package registers every page on ``bp``.
"""
from __future__ import annotations

from . import approvals, away, people, processes, source  # noqa: F401  (registers the pages)
from .common import bp

__all__ = ["bp"]
