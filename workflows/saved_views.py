"""Saved inbox views (interfaces.md: ``/me/views``): a name and the query string of ``GET /tasks``.

A view is checked when it is saved, with the same rules as the list it opens, so that
opening it later never fails on a key or value the list does not know.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from hexie.models import SavedView

from .access import Actor
from .engine import Engine
from .errors import Conflict, Invalid, NotFound
from .queries import TASK_SORTS, TASK_VIEWS

#: The keys of ``GET /tasks`` a view may keep, and how each is checked.
QUERY_KEYS = ("view", "sort", "process", "state", "org_unit", "search", "days", "per_page")
MAX_VIEWS = 50


def _row(view: SavedView) -> dict[str, Any]:
    return {"id": view.id, "name": view.name, "query": view.query, "created_at": view.created_at}


class SavedViews:
    """One person's saved views."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def list(self, actor: Actor) -> list[dict[str, Any]]:
        with self.engine.read_session() as s:
            return [_row(v) for v in s.scalars(select(SavedView).where(SavedView.user_id == actor.user_id)
                                              .order_by(SavedView.name))]

    def create(self, actor: Actor, name: str, query: str) -> dict[str, Any]:
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise Invalid("视图名称须为 1 到 100 个字", "a view needs a name of 1 to 100 characters",
                          {"name": "必填，最多 100 字 / required, at most 100 characters"})
        clean = self.check_query(query)
        with self.engine.transaction() as s:
            if s.scalar(select(func.count()).select_from(SavedView).where(SavedView.user_id == actor.user_id)) \
                    >= MAX_VIEWS:
                raise Invalid(f"最多保存 {MAX_VIEWS} 个视图", f"at most {MAX_VIEWS} saved views", {"name": "过多 / too many"})
            view = SavedView(user_id=actor.user_id, name=name, query=clean, created_at=self.engine.clock())
            s.add(view)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict("已有同名的视图", f"you already have a view named {name!r}", {"name": name}) from None
            return _row(view)

    def delete(self, actor: Actor, view_id: int) -> None:
        with self.engine.transaction() as s:
            gone = s.execute(delete(SavedView).where(SavedView.id == view_id, SavedView.user_id == actor.user_id))
            if gone.rowcount == 0:     # someone else's view is as missing as no view
                raise NotFound("没有这个视图", "no such view")

    def check_query(self, query: str) -> str:
        """The query string, normalised; an Invalid naming the first key or value that is wrong."""
        text = (query or "").lstrip("?")
        if len(text) > 2000:
            raise Invalid("查询条件过长", "the query is too long", {"query": "at most 2000 characters"})
        pairs = parse_qsl(text, keep_blank_values=False)
        processes = self.engine.processes
        seen: dict[str, str] = {}
        for key, value in pairs:
            if key not in QUERY_KEYS:
                raise Invalid(f"视图不能包含“{key}”", f"a view may not hold {key!r}",
                              {"query": f"allowed: {', '.join(QUERY_KEYS)}"})
            if key in seen:
                raise Invalid(f"“{key}”出现了两次", f"{key!r} is given twice", {"query": key})
            seen[key] = value
        problems = {
            "view": seen.get("view") not in (None, *TASK_VIEWS, "upcoming"),
            "sort": seen.get("sort") not in (None, *TASK_SORTS),
            "process": seen.get("process") is not None and seen["process"] not in processes,
            "days": seen.get("days") is not None and not (seen["days"].isdigit() and 1 <= int(seen["days"]) <= 366),
            "per_page": seen.get("per_page") is not None
            and not (seen["per_page"].isdigit() and 1 <= int(seen["per_page"]) <= 200),
        }
        if seen.get("state"):
            specs = [processes[seen["process"]]] if seen.get("process") in processes else processes.values()
            problems["state"] = not any(st.name == seen["state"] for spec in specs for st in spec.states)
        for key, wrong in problems.items():
            if wrong:
                raise Invalid(f"视图的“{key}”取值无效", f"the view's {key} is not valid", {"query": key})
        return urlencode([(k, seen[k]) for k in QUERY_KEYS if k in seen])
