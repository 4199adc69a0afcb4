"""Plain text files (.md, .txt, .csv, .json and anything else that decodes as text).

UTF-8 first (with or without a BOM), UTF-16 when a BOM says so, else Windows-1252 with a note.
Only as many bytes are read as the output can hold; CSV streams row by row into a capped
table; JSON is pretty-printed when it parses.
"""

from __future__ import annotations

import codecs
import csv
import json
from pathlib import Path

from .model import DocumentText, ReadLimits
from .output import Sink, table

_SAMPLE = 64 * 1024
_JSON_MAX_BYTES = 10 * 1024 * 1024  # larger JSON is shown as raw text rather than parsed whole


def read_text(path: Path, *, name: str, mime: str | None, limits: ReadLimits) -> DocumentText:
    sink = Sink(limits.max_chars)
    suffix = Path(name).suffix.lower()
    base_mime = (mime or "").split(";")[0].strip().lower()
    with path.open("rb") as f:
        sample = f.read(_SAMPLE)
    encoding = _encoding(sample, sink)
    if suffix == ".csv" or base_mime == "text/csv":
        _csv(path, encoding, limits, sink)
        return sink.result("text")
    is_json = suffix == ".json" or base_mime == "application/json"
    if is_json and path.stat().st_size <= _JSON_MAX_BYTES and _json(path, encoding, sink):
        return sink.result("text")
    _plain(path, encoding, limits, sink)
    return sink.result("text")


def _encoding(sample: bytes, sink: Sink) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of the sample is not an error.
        if not (exc.reason == "unexpected end of data" and exc.start >= len(sample) - 3):
            sink.note("the file is not UTF-8; it was decoded as Windows-1252")
            return "cp1252"
    return "utf-8"


def _plain(path: Path, encoding: str, limits: ReadLimits, sink: Sink) -> None:
    # One character past the limit tells whether the file goes on; nothing more is read.
    with path.open("r", encoding=encoding, errors="replace", newline="") as f:
        text = f.read(limits.max_chars + 1)
    sink.add(text[: limits.max_chars])
    if len(text) > limits.max_chars and not sink.truncated:
        sink.cut(f"output cut at {limits.max_chars} characters (the read limit)")


def _json(path: Path, encoding: str, sink: Sink) -> bool:
    try:
        data = json.loads(path.read_text(encoding=encoding, errors="replace"))
    except (json.JSONDecodeError, RecursionError):
        sink.note("not valid JSON; shown as text")
        return False
    sink.add(json.dumps(data, indent=2, ensure_ascii=False))
    return True


def _csv(path: Path, encoding: str, limits: ReadLimits, sink: Sink) -> None:
    with path.open("r", encoding=encoding, errors="replace", newline="") as f:
        sample = f.read(8192)
        try:
            dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        f.seek(0)
        rows: list[list[str]] = []
        width_cut = False
        try:
            for n, row in enumerate(csv.reader(f, dialect)):
                if n >= limits.max_sheet_rows:
                    sink.cut(f"only the first {limits.max_sheet_rows} rows read (the row limit)")
                    break
                if len(row) > limits.max_sheet_cols:
                    row, width_cut = row[: limits.max_sheet_cols], True
                rows.append(row)
        except csv.Error:
            sink.cut(f"the CSV is malformed after row {len(rows)}; the rest was not read")
    if width_cut:
        sink.cut(f"only the first {limits.max_sheet_cols} columns read (the column limit)")
    sink.add(table(rows))
