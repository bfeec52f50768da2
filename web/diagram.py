"""The process map as inline SVG, drawn by the application itself (no JS, no CDN).

A simple layered layout: each state's column is its breadth-first distance from the
initial state, states keep their display order within a column. Forward edges run
left to right between neighbouring columns; longer forward edges arc above the grid,
edges going back (returns, loops) arc below it. Boxes are drawn over the edges, and
labels over everything with a white halo, so crossings stay readable. Every text is
escaped: labels come from definitions that managers edit.
"""
from __future__ import annotations

from collections import deque

from markupsafe import Markup, escape

from workflows.spec import ProcessSpec

BOX_W, BOX_H = 136, 46
GAP_X, GAP_Y = 84, 30
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
    """Breadth-first depth of each state from the initial state (unreached: after the rest)."""
    depth = {spec.initial_state.name: 0}
    queue = deque([spec.initial_state.name])
    while queue:
        name = queue.popleft()
        for t in spec.transitions_from(name):
            if t.dest not in depth:
                depth[t.dest] = depth[name] + 1
                queue.append(t.dest)
    last = max(depth.values(), default=0) + 1
    return {s.name: depth.get(s.name, last) for s in spec.states}


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


def _draw(spec: ProcessSpec, current: str | None, locale: str) -> str:
    depth = layers(spec)
    columns: dict[int, list[str]] = {}
    for s in spec.states:
        columns.setdefault(depth[s.name], []).append(s.name)
    rows = max(len(c) for c in columns.values())
    ncols = max(columns) + 1

    # Edges: one per (source, dest) pair, labels joined.
    edges: dict[tuple[str, str], list[str]] = {}
    for t in spec.transitions:
        text = t.label.get(locale)
        for source in t.sources:
            labels = edges.setdefault((source, t.dest), [])
            if text not in labels:
                labels.append(text)
    over = sum(1 for (a, b) in edges if depth[b] - depth[a] > 1)
    under = sum(1 for (a, b) in edges if depth[b] <= depth[a] and a != b)
    top = PAD + (min(over, 6) * 10 + 26 if over else 8)
    grid_h = rows * BOX_H + (rows - 1) * GAP_Y

    pos: dict[str, tuple[float, float]] = {}
    for col, names in columns.items():
        offset = (grid_h - (len(names) * BOX_H + (len(names) - 1) * GAP_Y)) / 2 if len(names) < rows else 0
        for row, name in enumerate(names):
            pos[name] = (PAD + col * (BOX_W + GAP_X), top + offset + row * (BOX_H + GAP_Y))
    width = PAD * 2 + ncols * BOX_W + (ncols - 1) * GAP_X
    height = top + grid_h + (min(under, 6) * 12 + 34 if under else 8) + PAD

    uid = f"hx-{escape(spec.key)}"
    title = escape(spec.title.get(locale))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram" role="img" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'aria-label="{title}">',
        f"<title>{title}</title>",
        f'<defs><marker id="{uid}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="#6b7280"/></marker>'
        f'<marker id="{uid}-arrow-hot" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="{ACCENT}"/></marker></defs>',
    ]
    edge_svg: list[str] = []
    label_svg: list[str] = []
    over_i = under_i = 0
    for (a, b), labels in edges.items():
        ax, ay = pos[a]
        bx, by = pos[b]
        hot = a == current
        stroke = ACCENT if hot else "#9ca3af"
        marker = f"url(#{uid}-arrow{'-hot' if hot else ''})"
        text = " / ".join(labels)
        if a == b:  # a loop on the box's top right
            x, y = ax + BOX_W - 24, ay
            d = f"M{x:.1f} {y:.1f} C{x:.1f} {y - 26:.1f} {x + 30:.1f} {y - 26:.1f} {x + 24:.1f} {y:.1f}"
            lx, ly, anchor = x + 12, y - 24, "middle"
        elif depth[b] == depth[a] + 1:
            x1, y1 = ax + BOX_W, ay + BOX_H / 2
            x2, y2 = bx, by + BOX_H / 2
            dx = GAP_X / 2
            d = f"M{x1:.1f} {y1:.1f} C{x1 + dx:.1f} {y1:.1f} {x2 - dx:.1f} {y2:.1f} {x2 - 1:.1f} {y2:.1f}"
            lx, ly, anchor = (x1 + x2) / 2, (y1 + y2) / 2 - 5, "middle"
        elif depth[b] > depth[a]:  # skips columns: arc above the grid
            over_i += 1
            lane = top - 12 - (over_i % 6) * 10
            x1, y1 = ax + BOX_W * 0.62, ay
            x2, y2 = bx + BOX_W * 0.38, by
            d = (f"M{x1:.1f} {y1:.1f} C{x1:.1f} {lane:.1f} {x2:.1f} {lane:.1f} {x2:.1f} {y2 - 1:.1f}")
            lx, ly, anchor = (x1 + x2) / 2, (y1 + 3 * lane + y2) / 4 - 3 + 4, "middle"
        else:  # back (or sideways): arc below the grid
            under_i += 1
            lane = top + grid_h + 16 + (under_i % 6) * 12
            x1, y1 = ax + BOX_W * 0.4, ay + BOX_H
            x2, y2 = bx + BOX_W * 0.6, by + BOX_H
            d = (f"M{x1:.1f} {y1:.1f} C{x1:.1f} {lane:.1f} {x2:.1f} {lane:.1f} {x2:.1f} {y2 + 1:.1f}")
            lx, ly, anchor = (x1 + x2) / 2, (y1 + 3 * lane + y2) / 4 + 4, "middle"
        edge_svg.append(f'<path d="{d}" fill="none" stroke="{stroke}" stroke-width="{2 if hot else 1.3}" '
                        f'marker-end="{marker}"/>')
        for i, line in enumerate(_wrap(text, EDGE_FONT, GAP_X + BOX_W * 0.8, 2)):
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
        parts.append(f'<g class="state{" current" if is_current else ""}">')
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
        parts.append("</g>")
    parts.extend(label_svg)
    parts.append("</svg>")
    return "".join(parts)
