"""Documents the agent reads and writes: Word, Excel, PowerPoint, PDF, text and images.

Pure file work (no Graph, no tools): `read_document` turns a local file into markdown within
`ReadLimits`; `markdown_to_docx` writes markdown as a Word document. Errors are `DocumentError`.
"""

from __future__ import annotations

from ..errors import DocumentError
from .model import DocumentText, Kind, ReadLimits
from .reader import read_document
from .writer import markdown_to_docx

__all__ = ["DocumentError", "DocumentText", "Kind", "ReadLimits", "markdown_to_docx", "read_document"]
