"""The process map as inline SVG, drawn by the application itself (no JS, no CDN).

A simple layered layout: each state's column is its breadth-first distance from the
initial state, states keep their display order within a column; the final states sit
in a band below, each under its column. Forward edges run left to right between
neighbouring columns, edges to an ending go down, edges that skip columns or go back
(returns) arc above the grid, each on its own lane. Boxes are drawn over the edges, and
labels over everything with a white halo, so crossings stay readable. Every text is
escaped: labels come from definitions that managers edit.

That drawing is the fallback (no JavaScript, printing, tests). Its ``<svg>`` carries the
process as a graph in ``data-graph`` (:func:`graph`: states with their flags, transitions
with their labels, quorum, timers and roles); ``static/hexie-diagram.js`` lays that graph
out with the Eclipse Layout Kernel (``static/vendor/elkjs``, served by the app itself)
and puts its own drawing in place of this one, sized to its panel.
"""
from __future__ import annotations

import json
from collections import deque
from datetime import timedelta
from typing import Any

from flask import current_app, has_app_context
from markupsafe import Markup, escape

from hexie.workflows.spec import ProcessSpec, StateSpec

from .i18n import text_in

BOX_W, BOX_H = 116, 46
GAP_X, GAP_Y = 64, 26
LANE = 15          # spacing of the arcs above the grid
FINAL_GAP = 64     # between the working states and the band of endings
PAD = 16
FONT = 13
EDGE_FONT = 11
ACCENT = "#c8102e"


def _text_width(text: str, size: int) -> float:
    """Rough rendered width: CJK characters are square, Latin ones about half."""
    return sum(size if ord(ch) > 0x2E7F else size * 0.56 for ch in text)


def _wrap(text: str, size: int, width: float, lines: int = 2) -> list[str]:
    """Break ``text`` into at most ``lines`` lines of ``width`` (an ellipsis if still longer)."""
    out: list[str] = []
    rest = text
    while rest and len(out) < lines:
        if _text_width(rest, size) <= width:
            out.append(rest)
            rest = ""
            break
        cut = 0
        for i in range(1, len(rest) + 1):
            if _text_width(rest[:i], size) > width:
                break
            cut = i
        space = rest.rfind(" ", 0, cut + 1)
        if space > 0 and not any(ord(c) > 0x2E7F for c in rest[:cut]):
            cut = space
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest and out:
        last = out[-1]
        while last and _text_width(last + "…", size) > width:
            last = last[:-1]
        out[-1] = last + "…"
    return out


def layers(spec: ProcessSpec) -> dict[str, int]:
    """Each state's column: its breadth-first distance from the initial state, refined.

    A working state that the definition lists after another one leading to it is put
    at least one column to its right, so that the main path reads left to right and
    only returns go back. A final state sits under the earliest state leading to it.
    """
    order = {s.name: i for i, s in enumerate(spec.states)}
    finals = {s.name for s in spec.states if s.final}
    depth = {spec.initial_state.name: 0}
    queue = deque([spec.initial_state.name])
    while queue:
        name = queue.popleft()
        for t in spec.transitions_from(name):
            if t.dest not in depth:
                depth[t.dest] = depth[name] + 1
                queue.append(t.dest)
    last = max(depth.values(), default=0) + 1
    depth = {s.name: depth.get(s.name, last) for s in spec.states}
    forward = [(a, t.dest) for t in spec.transitions for a in t.sources
               if t.dest not in finals and a != t.dest and order[a] < order[t.dest]]
    for _ in range(len(spec.states)):  # longest path over the display-order DAG: terminates
        changed = False
        for a, b in forward:
            if depth[b] <= depth[a]:
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            break
    for name in finals:
        sources = [depth[a] for t in spec.transitions if t.dest == name for a in t.sources]
        if sources:
            depth[name] = min(sources)
    return depth


def _t(key: str, locale: str, **params: Any) -> str:
    return text_in(locale, key, **params)


def _role_labels(locale: str) -> dict[str, str]:
    """role key -> its label, from the running app's registry (the keys themselves elsewhere)."""
    state = current_app.extensions.get("hexie") if has_app_context() else None
    roles = getattr(getattr(getattr(state, "engine", None), "registry", None), "roles", None)
    return {key: role.label.get(locale) for key, role in getattr(roles, "roles", {}).items()}


def _after(delay: timedelta, locale: str) -> str:
    hours = delay.total_seconds() / 3600
    if hours >= 24 and hours % 24 == 0:
        return _t("diagram.after_days", locale, n=int(hours // 24))
    return _t("diagram.after_hours", locale, n=round(hours, 1) if hours % 1 else int(hours))


def _who(keys, roles: dict[str, str], locale: str) -> str:
    """"\n" and the roles that may take a transition, for its hover text ("" for none)."""
    names = [roles.get(r, r) for r in dict.fromkeys(keys) if r != "system"]
    if not names:
        return ""
    return "\n" + _t("diagram.roles", locale, roles=(", " if locale == "en" else "、").join(names))


def graph(spec: ProcessSpec, current: str | None = None, locale: str = "zh") -> dict[str, Any]:
    """The process as plain data for a layout engine, every text in ``locale``.

    ``states``: ``{id, label, initial, final, current}`` in the definition's order.
    ``edges``: one per (source, target) pair in the order the definition first names it
    (and another one for the timers' transitions between them, which are drawn dashed):
    ``{id, source, target, label, title, loop, timer, quorum, hot}``. A transition from
    every other working step (``from: '*'``) is one edge from ``"*"``, drawn as "any step".
    ``label`` is what is written on the edge: the transitions' labels, each with its quorum
    or timer note; a transition from several states is written once, on its first edge
    (the others carry it in ``title``, the hover text, which also names the roles).
    ``hot``: the edge leaves the current state (what can be done now).
    """
    roles = _role_labels(locale)
    timers = {(s.name, tm.trigger): tm for s in spec.states for tm in s.timers}
    by_name = {s.name: s for s in spec.states}
    fields = spec.fields
    working = {s.name for s in spec.states if not s.final}
    pairs: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for t in spec.transitions:
        text = t.label.get(locale)
        notes = []
        if t.quorum > 1:
            notes.append(_t("diagram.quorum", locale, n=t.quorum))
        if t.auto:
            notes.append(_t("diagram.auto", locale))
        anywhere = len(t.sources) >= 3 and set(t.sources) == working - {t.dest}
        for source in t.sources:
            if anywhere:   # from every other working step ('*'): one edge from "any step"
                edge = pairs.setdefault(("*", t.dest, False), {
                    "id": f"e{len(pairs)}", "source": "*", "target": t.dest, "labels": [text], "titles": [],
                    "loop": False, "timer": False, "quorum": t.quorum, "hot": current in t.sources})
                if source == t.sources[0]:
                    edge["titles"].append(text + _who(t.roles or (), roles, locale))
                continue
            timer = timers.get((source, t.trigger))
            extra = list(notes)
            if timer is not None:
                if timer.after is not None:
                    extra.append(_after(timer.after, locale))
                elif timer.at_field:
                    field = fields.get(timer.at_field)
                    extra.append(_t("diagram.on_field", locale,
                                    field=field.label.get(locale) if field else timer.at_field))
            full = f"{text}（{'，'.join(extra)}）" if extra and locale != "en" else (
                f"{text} ({', '.join(extra)})" if extra else text)
            edge = pairs.setdefault((source, t.dest, timer is not None), {
                "id": f"e{len(pairs)}", "source": source, "target": t.dest, "labels": [], "titles": [],
                "loop": source == t.dest, "timer": False, "quorum": 1, "hot": source == current, "auto": False})
            edge["auto"] = edge["auto"] or t.auto
            if full not in edge["titles"]:
                edge["titles"].append(full + _who(t.roles if t.roles is not None else
                                                  [task.role for task in by_name[source].tasks], roles, locale))
            first = source == t.sources[0]
            if first and full not in edge["labels"]:
                edge["labels"].append(full)
            edge["timer"] = timer is not None
            edge["quorum"] = max(edge["quorum"], t.quorum)
    edges = []
    for edge in pairs.values():
        labels, titles = edge.pop("labels"), edge.pop("titles")
        edges.append({**edge, "label": " / ".join(labels), "title": "\n".join(titles)})
    return {
        "process": spec.key,
        "title": spec.title.get(locale),
        "current": current,
        "start": _t("diagram.start", locale),
        "any": _t("diagram.any", locale),
        "states": [{"id": s.name, "label": s.label.get(locale), "initial": s.name == spec.initial_state.name,
                    "final": s.final, "current": s.name == current, **_run_time(s, spec, locale)}
                   for s in spec.states],
        "edges": edges,
    }


def _run_time(state: StateSpec, spec: ProcessSpec, locale: str) -> dict[str, Any]:
    """What a state decides at run time, for the drawing: ``for_each`` (the note "for each:
    FIELD"), ``interleaved`` (one at a time), ``calls`` (the called process, its title and the
    page of its map when there is one), ``note`` (the line written under the state's label)."""
    out: dict[str, Any] = {"for_each": None, "interleaved": False, "calls": None, "note": ""}
    notes = []
    if state.for_each is not None:
        field = spec.fields.get(state.for_each.field)
        out["for_each"] = field.label.get(locale) if field else state.for_each.field
        notes.append(_t("diagram.for_each", locale, field=out["for_each"]))
    if state.interleaved:
        out["interleaved"] = True
        notes.append(_t("diagram.one_at_a_time", locale))
    if state.call is not None:
        key = state.call.process
        out["calls"] = {"process": key, "title": _process_title(key, locale), "href": _process_href(key)}
        notes.append(_t("diagram.calls", locale, process=out["calls"]["title"]))
    out["note"] = "；".join(notes) if locale != "en" else "; ".join(notes)
    return out


def _process_title(key: str, locale: str) -> str:
    state = current_app.extensions.get("hexie") if has_app_context() else None
    processes = getattr(getattr(getattr(state, "engine", None), "registry", None), "processes", None) or {}
    spec = processes.get(key)
    return spec.title.get(locale) if spec is not None else key


def _process_href(key: str) -> str | None:
    """The page showing the called process's map (the administration's process page), if any."""
    if not has_app_context():
        return None
    from flask import url_for
    from werkzeug.routing import BuildError
    for endpoint in ("admin.process", "admin_processes.process", "hexie_admin.process"):
        try:
            return url_for(endpoint, key=key)
        except BuildError:
            continue
        except RuntimeError:   # no request to build it for
            return None
    return None


def render_svg(spec: ProcessSpec, current: str | None = None, locale: str = "zh") -> Markup:
    """The process as an ``<svg>`` element, ``current`` highlighted."""
    return Markup(_render(spec, current, locale))


_CACHE: dict[tuple, str] = {}  # (process, content, current, locale) -> svg; drawing is pure


def _render(spec: ProcessSpec, current: str | None, locale: str) -> str:
    key = (spec.key, spec.content_hash or str(id(spec)), current, locale)
    cached = _CACHE.get(key)
    if cached is None:
        cached = _draw(spec, current, locale)
        if len(_CACHE) > 512:
            _CACHE.clear()
        _CACHE[key] = cached
    return cached


def _marker(state: StateSpec, x: float, y: float, colour: str) -> str:
    """BPMN's markers at the foot of a box: three bars for one task per value (multiple
    instances), a boxed plus for a called process, a small loop arrow for one at a time."""
    cx, foot = x + BOX_W / 2, y + BOX_H - 3
    out = []
    if state.for_each is not None:
        out += [f'<rect class="marker-for-each" x="{cx - 7 + i * 5:.1f}" y="{foot - 8:.1f}" width="2" height="7" '
                f'fill="{colour}"/>' for i in range(3)]
    if state.call is not None:
        out.append(f'<g class="marker-call"><rect x="{cx - 5:.1f}" y="{foot - 9:.1f}" width="10" height="9" '
                   f'fill="none" stroke="{colour}" stroke-width="1"/><path d="M{cx - 3:.1f} {foot - 4.5:.1f}'
                   f'H{cx + 3:.1f}M{cx:.1f} {foot - 7.5:.1f}V{foot - 1.5:.1f}" stroke="{colour}" stroke-width="1"/></g>')
    if state.interleaved and state.for_each is None:
        out.append(f'<text class="marker-one-at-a-time" x="{cx:.1f}" y="{foot - 1:.1f}" text-anchor="middle" '
                   f'font-size="9" fill="{colour}">1/n</text>')
    return "".join(out)


def _draw(spec: ProcessSpec, current: str | None, locale: str) -> str:
    depth = layers(spec)
    finals = [s.name for s in spec.states if s.final]
    columns: dict[int, list[str]] = {}
    for s in spec.states:
        if not s.final:
            columns.setdefault(depth[s.name], []).append(s.name)
    ncols = max(depth.values()) + 1
    rows = max((len(c) for c in columns.values()), default=1)

    # Edges: one per (source, dest) pair, labels joined; a final state's label is shown once.
    edges: dict[tuple[str, str], list[str]] = {}
    timed = {(s.name, tm.trigger) for s in spec.states for tm in s.timers}
    manual: set[tuple[str, str]] = set()   # pairs with a transition a person takes (the others: dashed)
    automatic: set[tuple[str, str]] = set()   # pairs the engine moves along by itself (dotted)
    for t in spec.transitions:
        text = t.label.get(locale)
        if t.auto:
            text = f"{text}（{_t('diagram.auto', locale)}）" if locale != "en" else f"{text} ({_t('diagram.auto', locale)})"
        for source in t.sources:
            labels = edges.setdefault((source, t.dest), [])
            if text not in labels:
                labels.append(text)
            if t.auto:
                automatic.add((source, t.dest))
            elif (source, t.trigger) not in timed:
                manual.add((source, t.dest))
    final_set = set(finals)

    def kind(a: str, b: str) -> str:
        if a == b:
            return "loop"
        if b in final_set:
            return "down"
        if depth[b] == depth[a] + 1:
            return "next"
        if depth[b] == depth[a]:
            return "side"
        return "over"  # skips ahead or goes back: an arc above the grid

    arcs = [e for e in edges if kind(*e) == "over"]
    top = PAD + (len(arcs) * LANE + 18 if arcs else 18)
    main_h = rows * BOX_H + (rows - 1) * GAP_Y
    final_y = top + main_h + FINAL_GAP

    pos: dict[str, tuple[float, float]] = {}
    for col, names in columns.items():
        offset = (main_h - (len(names) * BOX_H + (len(names) - 1) * GAP_Y)) / 2
        for row, name in enumerate(names):
            pos[name] = (PAD + col * (BOX_W + GAP_X), top + offset + row * (BOX_H + GAP_Y))
    used: dict[int, int] = {}
    for name in finals:  # the band of endings, each under its own column (shifted when shared)
        col = depth[name] if name in depth else 0
        while used.get(col):
            col += 1
        used[col] = 1
        ncols = max(ncols, col + 1)
        pos[name] = (PAD + col * (BOX_W + GAP_X), final_y)
    width = PAD * 2 + ncols * BOX_W + (ncols - 1) * GAP_X
    height = (final_y + BOX_H if finals else top + main_h) + PAD

    uid = f"hx-{escape(spec.key)}"
    title = escape(spec.title.get(locale))
    data = escape(json.dumps(graph(spec, current, locale), ensure_ascii=False, separators=(",", ":")))
    parts = [
        f'<svg class="diagram" role="img" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'aria-label="{title}" data-graph="{data}">',
        f"<title>{title}</title>",
        f'<defs><marker id="{uid}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" '
        f'markerHeight="9" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="#6b7280"/></marker>'
        f'<marker id="{uid}-arrow-hot" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" '
        f'markerHeight="9" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="{ACCENT}"/></marker></defs>',
    ]
    edge_svg: list[str] = []
    label_svg: list[str] = []
    labelled: set[tuple[str, str]] = set()
    lane_no = 0
    for (a, b), labels in edges.items():
        ax, ay = pos[a]
        bx, by = pos[b]
        how = kind(a, b)
        hot = a == current
        if how == "loop":
            x, y = ax + BOX_W - 22, ay
            d = f"M{x:.1f} {y:.1f} C{x - 4:.1f} {y - 24:.1f} {x + 26:.1f} {y - 24:.1f} {x + 16:.1f} {y - 1:.1f}"
            lx, ly = x + 8, y - 22
        elif how == "next":
            x1, y1, x2, y2 = ax + BOX_W, ay + BOX_H / 2, bx, by + BOX_H / 2
            dx = GAP_X / 2
            d = f"M{x1:.1f} {y1:.1f} C{x1 + dx:.1f} {y1:.1f} {x2 - dx:.1f} {y2:.1f} {x2 - 1:.1f} {y2:.1f}"
            lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 - 6
        elif how == "side":
            below = by > ay
            x1, x2 = ax + BOX_W, bx + BOX_W
            y1, y2 = ay + BOX_H * (0.7 if below else 0.3), by + BOX_H * (0.3 if below else 0.7)
            bulge = x1 + (30 if below else 18)
            d = f"M{x1:.1f} {y1:.1f} C{bulge:.1f} {y1:.1f} {bulge:.1f} {y2:.1f} {x2 + 1:.1f} {y2:.1f}"
            lx, ly = bulge + 2, (y1 + y2) / 2 + 4
        elif how == "down":
            x1, y1 = ax + BOX_W / 2, ay + BOX_H
            x2, y2 = bx + BOX_W / 2, by
            if abs(x1 - x2) < 1:
                d = f"M{x1:.1f} {y1:.1f} L{x2:.1f} {y2 - 1:.1f}"
            else:
                mid = (y1 + y2) / 2
                d = f"M{x1:.1f} {y1:.1f} C{x1:.1f} {mid + 10:.1f} {x2:.1f} {mid - 10:.1f} {x2:.1f} {y2 - 1:.1f}"
            lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 + 4
        else:  # over: leave from the top, arc along a lane above the grid, come down into the top
            lane_no += 1
            lane = top - 12 - (lane_no - 1) * LANE
            forward = bx > ax
            x1, y1 = ax + BOX_W * (0.7 if forward else 0.3), ay
            x2, y2 = bx + BOX_W * (0.3 if forward else 0.7), by
            d = (f"M{x1:.1f} {y1:.1f} C{x1:.1f} {lane - 6:.1f} {x2:.1f} {lane - 6:.1f} {x2:.1f} {y2 - 1:.1f}")
            lx, ly = (x1 + x2) / 2, lane - 0.5
        stroke = ACCENT if hot else "#9ca3af"
        marker = f"url(#{uid}-arrow{'-hot' if hot else ''})"
        dashed = '' if (a, b) in manual else (' stroke-dasharray="2 3"' if (a, b) in automatic
                                              else ' stroke-dasharray="5 4"')
        edge_svg.append(f'<path d="{d}" fill="none" stroke="{stroke}" stroke-width="{2 if hot else 1.3}"{dashed} '
                        f'marker-end="{marker}"/>')
        text = " / ".join(lab for lab in labels if (b, lab) not in labelled or b not in final_set)
        labelled.update((b, lab) for lab in labels)
        if not text:
            continue
        anchor = "start" if how == "side" else "middle"
        room = GAP_X + BOX_W * 0.9 if how in ("next", "down") else BOX_W * 2
        for i, line in enumerate(_wrap(text, EDGE_FONT, room, 2)):
            label_svg.append(
                f'<text x="{lx:.1f}" y="{ly + i * (EDGE_FONT + 2):.1f}" text-anchor="{anchor}" '
                f'font-size="{EDGE_FONT}" fill="{ACCENT if hot else "#4b5563"}" stroke="#fff" '
                f'stroke-width="3" stroke-linejoin="round" paint-order="stroke">{escape(line)}</text>')
    parts.extend(edge_svg)

    initial = spec.initial_state.name
    for s in spec.states:
        x, y = pos[s.name]
        is_current = s.name == current
        fill = ACCENT if is_current else ("#f3f4f6" if s.final else "#ffffff")
        stroke = ACCENT if is_current else ("#6b7280" if s.final else "#9ca3af")
        colour = "#ffffff" if is_current else "#111827"
        weight = ' font-weight="bold"' if is_current else ""
        width_px = 2.5 if is_current or s.name == initial else 1.2
        run_time = _run_time(s, spec, locale)
        href = (run_time["calls"] or {}).get("href")
        if href:   # a called process: its box links to its own map
            parts.append(f'<a href="{escape(href)}" class="calls">')
        parts.append(f'<g class="state{" current" if is_current else ""}'
                     f'{" for-each" if s.for_each else ""}{" calls" if s.call else ""}">')
        if run_time["note"]:
            parts.append(f"<title>{escape(s.label.get(locale))}: {escape(run_time['note'])}</title>")
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="10" ry="10" '
                     f'fill="{fill}" stroke="{stroke}" stroke-width="{width_px}"/>')
        if s.final:
            parts.append(f'<rect x="{x + 3:.1f}" y="{y + 3:.1f}" width="{BOX_W - 6}" height="{BOX_H - 6}" '
                         f'rx="8" ry="8" fill="none" stroke="{stroke}" stroke-width="0.8"/>')
        lines = _wrap(s.label.get(locale), FONT, BOX_W - 14, 2)
        first = y + BOX_H / 2 + FONT * 0.36 - (len(lines) - 1) * (FONT + 2) / 2
        for i, line in enumerate(lines):
            parts.append(f'<text x="{x + BOX_W / 2:.1f}" y="{first + i * (FONT + 2):.1f}" text-anchor="middle" '
                         f'font-size="{FONT}" fill="{colour}"{weight}>{escape(line)}</text>')
        parts.append(_marker(s, x, y, colour if is_current else "#374151"))
        parts.append("</g>")
        if href:
            parts.append("</a>")
    parts.extend(label_svg)
    parts.append("</svg>")
    return "".join(parts)
