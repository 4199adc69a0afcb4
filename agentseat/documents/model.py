"""The shapes of the document layer: the limits a read obeys and the text a read returns.

Plain frozen dataclasses; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["docx", "xlsx", "pptx", "pdf", "text", "image"]

_MB = 1024 * 1024


@dataclass(frozen=True)
class ReadLimits:
    """What one read may cost. Each limit that is hit cuts the output and leaves a note;
    only `max_input_bytes` (and the zip guards) refuse the file outright."""

    max_input_bytes: int = 50 * _MB
    max_chars: int = 100_000
    max_pdf_pages: int = 200
    max_sheet_rows: int = 500  # per sheet, and per CSV
    max_sheet_cols: int = 50
    max_sheet_cells: int = 20_000  # over the whole workbook
    max_image_bytes: int = 10 * _MB  # MCP image content travels base64 in one message
    # Zip guards, checked on the central directory before any Office library opens the file.
    max_unzipped_bytes: int = 256 * _MB
    max_zip_ratio: float = 200.0  # per entry; ordinary Office XML compresses 5-30x
    max_zip_entries: int = 10_000
    # XML the Office libraries parse whole (an lxml tree takes about 4x its size in memory);
    # Excel worksheets stream in read-only mode and do not count.
    max_xml_bytes: int = 64 * _MB


@dataclass(frozen=True)
class DocumentText:
    """A document read as markdown (or, for an image, its bytes for MCP image content).

    `notes` say what was cut or skipped, one short sentence each; `truncated` is True when
    any limit cut the content.
    """

    markdown: str
    kind: Kind
    truncated: bool = False
    notes: list[str] = field(default_factory=list)
    pages: int | None = None
    sheets: int | None = None
    slides: int | None = None
    data: bytes | None = None  # images only
    mime: str | None = None  # images only
