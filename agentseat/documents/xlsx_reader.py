"""Excel (.xlsx) as markdown tables, one per sheet, capped in rows, columns and cells.

openpyxl streams rows in read-only mode, and data-only mode gives formulas' cached values
(what Excel last computed and saved), never the formulas themselves.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import openpyxl

from .model import DocumentText, ReadLimits
from .output import Sink, table


def read_xlsx(path: Path, limits: ReadLimits) -> DocumentText:
    wb = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    try:
        sink = Sink(limits.max_chars)
        cells_left = limits.max_sheet_cells
        sheets = wb.worksheets
        for index, ws in enumerate(sheets):
            if cells_left <= 0:
                sink.cut(f"sheets {index + 1}-{len(sheets)} skipped: the workbook cell limit "
                         f"({limits.max_sheet_cells}) was reached")
                break
            rows, used = _rows(ws, limits, cells_left, sink)
            cells_left -= used
            hidden = " (hidden)" if ws.sheet_state != "visible" else ""
            body = table(rows) if rows else "*(empty sheet)*"
            if not sink.add(f"## {ws.title}{hidden}\n\n{body}"):
                break
        if wb.chartsheets:
            sink.note(f"{len(wb.chartsheets)} chart sheet(s) skipped: text only")
        return sink.result("xlsx", sheets=len(sheets))
    finally:
        wb.close()


def _rows(ws: Any, limits: ReadLimits, cells_left: int, sink: Sink) -> tuple[list[list[str]], int]:
    rows: list[list[str]] = []
    pending_empty: list[list[str]] = []  # empty rows are kept only when more content follows
    used = 0
    width_cut = False
    for n, values in enumerate(ws.iter_rows(values_only=True)):
        if n >= limits.max_sheet_rows:
            if all(v is None for v in values):
                continue  # trailing blank rows inside the sheet's dimension are not content
            sink.cut(f"sheet {ws.title!r}: only the first {limits.max_sheet_rows} rows read (the row limit)")
            break
        row = [_cell(v) for v in values]
        while row and not row[-1]:
            row.pop()
        if len(row) > limits.max_sheet_cols:
            row = row[: limits.max_sheet_cols]
            width_cut = True
        if not row:
            pending_empty.append([])
            continue
        if used + len(row) > cells_left:
            sink.cut(f"sheet {ws.title!r}: cut at row {n + 1}, the workbook cell limit "
                     f"({limits.max_sheet_cells}) was reached")
            break
        rows.extend(pending_empty)
        pending_empty.clear()
        rows.append(row)
        used += len(row)
    if width_cut:
        sink.cut(f"sheet {ws.title!r}: only the first {limits.max_sheet_cols} columns read (the column limit)")
    return rows, used


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ").removesuffix(" 00:00:00").removesuffix("T00:00:00")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)
