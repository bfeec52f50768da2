"""PDF on paper: the case file (审批表) and the documents a definition declares (协议, 资助函).

Made with ReportLab's platypus and its CID font ``STSong-Light`` (Adobe's Song face for
simplified Chinese, which every PDF reader carries: nothing is downloaded, nothing embedded),
so Latin text prints in the same face. Chinese first, English after it: headings and labels
carry both; the case file's values are read in Chinese; a document prints its Chinese text,
then its English text.

What is printed is what the reader may see: the callers hand over the case as
:meth:`hexie.workflows.queries.CaseQueries.case` and ``history`` gave it to her (sensitive fields
masked for those not working the case), formatted by the case page's own helpers.
"""
from __future__ import annotations

import io
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import (HRFlowable, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table,
                                TableStyle)

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))

_BASE = dict(fontName=FONT, wordWrap="CJK", leading=15, fontSize=10.5)
STYLES = {
    "title": ParagraphStyle("title", **{**_BASE, "fontSize": 18, "leading": 24}, alignment=TA_CENTER,
                            spaceAfter=2),
    "subtitle": ParagraphStyle("subtitle", **{**_BASE, "fontSize": 11, "leading": 15}, alignment=TA_CENTER,
                               textColor=colors.HexColor("#444444"), spaceAfter=8),
    "h2": ParagraphStyle("h2", **{**_BASE, "fontSize": 12.5, "leading": 17}, spaceBefore=10, spaceAfter=4),
    "body": ParagraphStyle("body", **_BASE, spaceAfter=6, firstLineIndent=0),
    "para": ParagraphStyle("para", **{**_BASE, "fontSize": 11.5, "leading": 19}, spaceAfter=7),
    "para_en": ParagraphStyle("para_en", **{**_BASE, "fontSize": 10, "leading": 14}, spaceAfter=5,
                              textColor=colors.HexColor("#222222")),
    "cell": ParagraphStyle("cell", **{**_BASE, "fontSize": 9.5, "leading": 12.5}),
    "small": ParagraphStyle("small", **{**_BASE, "fontSize": 8.5, "leading": 11}, textColor=colors.HexColor("#555555")),
    "note": ParagraphStyle("note", **{**_BASE, "fontSize": 9, "leading": 12}, textColor=colors.HexColor("#8a1c1c")),
}
GRID = colors.HexColor("#888888")
SHADE = colors.HexColor("#eeeeee")


def _clean(text: str) -> str:
    """Text the Song face can show: it has no middle dot (U+00B7), which reads as a dash here."""
    return escape(text or "").replace("\u00b7", "-")


def _p(text: str, style: str = "cell") -> Paragraph:
    return Paragraph(_clean(text).replace("\n", "<br/>"), STYLES[style])


def _pair(zh: str, en: str, style: str = "cell") -> Paragraph:
    """Chinese, and the English below it in small grey type."""
    if not en or en == zh:
        return _p(zh, style)
    return Paragraph(f"{_clean(zh)}<br/><font size='7.5' color='#555555'>{_clean(en)}</font>", STYLES[style])


def bilingual(zh: str, en: str) -> str:
    return zh if not en or zh == en else f"{zh} {en}"


@dataclass
class CaseFile:
    """What the case file prints, already formatted for the reader."""

    site: str
    title: tuple[str, str]                      # the programme's title (zh, en)
    case_id: int
    business_key: str | None
    place: str
    state: tuple[str, str]
    opened: str
    closed: str
    printed_by: str
    printed_at: str
    masked: bool
    rows: list[tuple[str, str, str]]            # (label zh, label en, value)
    approvals: list[tuple[str, str, str, str, str]]   # (step, action, by, when, comment)
    history: list[tuple[str, str, str, str]]    # (when, by, what, detail)
    signatures: list[tuple[str, str]] = field(default_factory=list)   # extra (zh, en) signature lines


def _table(title: str, header: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]],
           widths: Sequence[float]) -> Table:
    """A section as one table: its title, the column heads (both repeated on each page), the rows;
    so a title never stays alone at the foot of a page."""
    data = [[_p(title, "h2")] + [""] * (len(header) - 1), [_pair(zh, en) for zh, en in header]]
    data += [[cell if isinstance(cell, Paragraph) else _p(str(cell)) for cell in row] for row in rows]
    table = Table(data, colWidths=widths, repeatRows=2, spaceBefore=8)
    table.setStyle(TableStyle([
        ("SPAN", (0, 0), (-1, 0)), ("LINEBELOW", (0, 0), (-1, 0), 0.5, GRID),
        ("LEFTPADDING", (0, 0), (-1, 0), 0), ("BOTTOMPADDING", (0, 0), (-1, 0), 2),
        ("GRID", (0, 1), (-1, -1), 0.5, GRID),
        ("BACKGROUND", (0, 1), (-1, 1), SHADE),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 4), ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        ("TOPPADDING", (0, 0), (-1, -1), 3), ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]))
    return table


def _signature_block(lines: Sequence[tuple[str, str]], width: float) -> Table:
    """Lines to sign on, two a row, each with its date; the unit's seal last."""
    cells = [Paragraph(f"{escape(zh)}（签字）<font size='8' color='#555555'>{escape(en)} (signature)</font>"
                       f"<br/><br/>____________________<br/>日期 <font size='8' color='#555555'>Date</font>："
                       f"______年____月____日", STYLES["cell"]) for zh, en in lines]
    cells.append(Paragraph("单位（盖章）<font size='8' color='#555555'>Seal of the unit</font><br/><br/><br/>"
                           "______年____月____日", STYLES["cell"]))
    if len(cells) % 2:
        cells.append(Paragraph("", STYLES["cell"]))
    rows = [cells[i:i + 2] for i in range(0, len(cells), 2)]
    table = Table(rows, colWidths=[width / 2] * 2)
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("TOPPADDING", (0, 0), (-1, -1), 10),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 10)]))
    return table


def _footer(left: str) -> Callable:
    def draw(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 8)
        canvas.setFillColor(colors.HexColor("#555555"))
        canvas.drawString(doc.leftMargin, 10 * mm, left)
        canvas.drawRightString(A4[0] - doc.rightMargin, 10 * mm, f"第 {doc.page} 页  Page {doc.page}")
        canvas.restoreState()
    return draw


def _document(buffer: io.BytesIO, title: str, author: str) -> SimpleDocTemplate:
    return SimpleDocTemplate(buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                             bottomMargin=18 * mm, title=title, author=author, creator="Hexie")


def case_file_pdf(case: CaseFile) -> bytes:
    """The case file: header, data, approvals, history, signature and seal lines."""
    buffer = io.BytesIO()
    doc = _document(buffer, f"{case.title[0]} #{case.case_id}", case.site)
    width = doc.width
    story: list[Any] = [
        _p(case.site, "subtitle"),
        _p(f"{case.title[0]}审批表", "title"),
        _p(f"{case.title[1]}: case file and approval sheet", "subtitle"),
    ]
    facts = [
        (("案件编号", "Case no."), f"#{case.case_id}"), (("业务编号", "Business key"), case.business_key or "—"),
        (("所在单位", "Unit"), case.place), (("目前环节", "Step now"), bilingual(*case.state)),
        (("立案时间", "Opened"), case.opened), (("办结时间", "Closed"), case.closed or "—"),
    ]
    grid = [[_pair(*facts[i][0]), _p(facts[i][1]), _pair(*facts[i + 1][0]), _p(facts[i + 1][1])]
            for i in range(0, len(facts), 2)]
    head = Table(grid, colWidths=[width * 0.16, width * 0.34, width * 0.16, width * 0.34])
    head.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, GRID), ("BACKGROUND", (0, 0), (0, -1), SHADE),
                              ("BACKGROUND", (2, 0), (2, -1), SHADE), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
    story.append(head)
    if case.masked:
        story += [Spacer(1, 4), _p("部分敏感信息已按阅读人权限遮蔽（●●●●）。 Sensitive data is masked for this reader.",
                                   "note")]
    story.append(_table("案件信息  Case data", [("项目", "Item"), ("内容", "Value")],
                        [[_pair(zh, en), _p(value)] for zh, en, value in case.rows] or [[_p("—"), _p("—")]],
                        [width * 0.32, width * 0.68]))
    story.append(_table("审批记录  Approvals", [("环节", "Step"), ("操作", "Action"), ("办理人", "By"), ("时间", "Time"), ("意见", "Comment")],
                        case.approvals or [["—"] * 5],
                        [width * 0.18, width * 0.16, width * 0.18, width * 0.18, width * 0.30]))
    story.append(_table("办理记录  History", [("时间", "Time"), ("办理人", "By"), ("事项", "What"), ("详情", "Detail")],
                        case.history or [["—"] * 4],
                        [width * 0.18, width * 0.17, width * 0.25, width * 0.40]))
    story.append(Spacer(1, 8))
    lines = [("经办人", "Handled by"), ("审核人", "Checked by"), ("审批人", "Approved by"), *case.signatures]
    story.append(KeepTogether([_p("签字盖章  Signatures and seal", "h2"), _signature_block(lines, width)]))
    footer = _footer(f"{case.site}  #{case.case_id}  打印 Printed {case.printed_at}  {case.printed_by}")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


# ------------------------------------------------------------------------ documents

def placeholders(body: str) -> list[tuple[str, int]]:
    """The ``{name}`` placeholders of a body with their offsets (``{{`` is a brace); raises
    ValueError on an unbalanced brace."""
    out, offset = [], 0
    for literal, name, _spec, _conv in string.Formatter().parse(body):
        offset += len(literal)
        if name is not None:
            out.append((name, offset))
            offset += len(name) + 2
    return out


def fill(body: str, values: Callable[[str], str]) -> str:
    """``body`` with each ``{name}`` replaced by ``values(name)``."""
    parts = []
    for literal, name, _spec, _conv in string.Formatter().parse(body):
        parts.append(literal)
        if name is not None:
            parts.append(values(name))
    return "".join(parts)


def _paragraphs(text: str, style: str) -> list[Paragraph]:
    out = []
    for block in text.strip().split("\n\n"):
        block = block.strip("\n")
        if not block.strip():
            continue
        out.append(Paragraph(_clean(block).replace("\n", "<br/>"), STYLES[style]))
    return out


def document_pdf(site: str, title: tuple[str, str], body: tuple[str, str], footer: str) -> bytes:
    """A declared document: its title, its Chinese text, then its English text."""
    buffer = io.BytesIO()
    doc = _document(buffer, title[0], site)
    story: list[Any] = [_p(site, "subtitle"), _p(title[0], "title"), _p(title[1], "subtitle"), Spacer(1, 6)]
    story += _paragraphs(body[0], "para")
    if body[1] and body[1] != body[0]:
        story += [Spacer(1, 8), HRFlowable(width="100%", thickness=0.5, color=GRID), Spacer(1, 4),
                  _p("English text (for reference; the Chinese text governs)", "small"), Spacer(1, 4)]
        story += _paragraphs(body[1], "para_en")
    doc.build(story, onFirstPage=_footer(footer), onLaterPages=_footer(footer))
    return buffer.getvalue()


def pdf_response_headers(name: str, inline: bool = True) -> Mapping[str, str]:
    disposition = "inline" if inline else "attachment"
    return {"Content-Disposition": f'{disposition}; filename="{name}.pdf"', "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff"}
