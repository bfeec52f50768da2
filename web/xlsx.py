"""Excel files: one streamed ``.xlsx`` answer, written a row at a time.

openpyxl's *write-only* workbook writes each appended row to a temporary file on disk at
once (no cell objects kept), so a list of 100,000 rows never holds 100,000 rows in memory:
the rows come from a generator that reads the database a batch at a time, the workbook is
closed into a temporary file, and the answer streams that file in 64 KiB chunks (then
deletes it). Text that a spreadsheet would take for a formula is kept as text, as in the
CSV export; numbers and days stay numbers and days, so sums and filters work in Excel.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask import Response

#: What would start a formula in a spreadsheet (the CSV export's rule).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Excel's limit of characters in one cell.
CELL_LIMIT = 32767
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Amounts of money (a Decimal to the fen, as the ledger keeps them): thousands and two decimals.
MONEY_FORMAT = "#,##0.00"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def cell(value: Any) -> Any:
    """A value as a cell: numbers and days as themselves, text neutralised and cut to Excel's limit."""
    if value is None or isinstance(value, (bool, int, float, Decimal, date, datetime)):
        return value
    text = _CONTROL.sub("", str(value))
    if text.startswith(FORMULA_START) and not _is_number(text):
        text = "'" + text
    return text[:CELL_LIMIT]


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
        return True
    except Exception:
        return False


Sheet = tuple[str, Sequence[str], Iterable[Sequence[Any]]]


def write_workbook(path: str, sheets: Iterable[Sheet]) -> None:
    """Write ``(title, header, rows)`` sheets to ``path`` in write-only mode (rows consumed lazily)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    bold = Font(bold=True)
    for title, header, rows in sheets:
        sheet = book.create_sheet(title=re.sub(r"[\[\]:*?/\\]", " ", title)[:31] or "Sheet")
        sheet.freeze_panes = "A2"
        heads = []
        for name in header:
            c = WriteOnlyCell(sheet, value=cell(name))
            c.font = bold
            heads.append(c)
        sheet.append(heads)
        for row in rows:
            out = []
            for v in row:
                if isinstance(v, Decimal) and v.is_finite() and v.as_tuple().exponent == -2:
                    money = WriteOnlyCell(sheet, value=v)     # yuan to the fen: read as ¥1,200.50 reads
                    money.number_format = MONEY_FORMAT
                    out.append(money)
                else:
                    out.append(cell(v))
            sheet.append(out)
    book.save(path)


def xlsx_response(name: str, sheets: Iterable[Sheet]) -> Response:
    """``sheets`` as an ``.xlsx`` attachment called ``name``.xlsx, streamed from a temporary file."""
    handle, path = tempfile.mkstemp(suffix=".xlsx", prefix="hexie-")
    os.close(handle)
    try:
        write_workbook(path, sheets)
        size = os.path.getsize(path)
        stream = open(path, "rb")
    finally:
        # POSIX: the open handle keeps the data; the name goes now (nothing left behind on errors)
        os.unlink(path)

    def chunks() -> Iterator[bytes]:
        with stream:
            while block := stream.read(65536):
                yield block

    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "export"
    return Response(chunks(), mimetype=XLSX_MIME, direct_passthrough=True,
                    headers={"Content-Disposition": f'attachment; filename="{safe}.xlsx"',
                             "Content-Length": str(size), "Cache-Control": "no-store"})


def all_pages(fetch, batch: int = 200) -> Iterator[dict[str, Any]]:
    """Every item of a paged query ``fetch(page, per_page)``, skipping any an insert pushed onto
    the next page (the ledger CSV's rule)."""
    seen: set[Any] = set()
    number = 1
    while True:
        page = fetch(number, batch)
        for item in page.items:
            key = item.get("id")
            if key in seen:
                continue
            seen.add(key)
            yield item
        if not page.items or number >= page.pages:
            return
        number += 1


def batches_of_pages(fetch, batch: int = 200) -> Iterator[list[dict[str, Any]]]:
    """The items of :func:`all_pages` in lists of ``batch`` (each list's names and places looked
    up at once)."""
    items: list[dict[str, Any]] = []
    for item in all_pages(fetch, batch):
        items.append(item)
        if len(items) == batch:
            yield items
            items = []
    if items:
        yield items
