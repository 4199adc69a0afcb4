"""PDF as text, page by page, with pypdf; capped in pages.

An encrypted PDF is read only when the empty user password opens it (a PDF that restricts
printing or copying but opens without a password); otherwise it is refused with a clear error.
pypdf bounds the output of its decompression filters itself.
"""

from __future__ import annotations

from pathlib import Path

import pypdf
from pypdf.errors import DependencyError

from ..errors import DocumentError
from .model import DocumentText, ReadLimits
from .output import Sink


def read_pdf(path: Path, limits: ReadLimits) -> DocumentText:
    reader = pypdf.PdfReader(str(path))
    if reader.is_encrypted:
        _open_encrypted(reader)
    sink = Sink(limits.max_chars)
    pages = len(reader.pages)
    blank = 0
    for number, page in enumerate(reader.pages, start=1):
        if number > limits.max_pdf_pages:
            sink.cut(f"only the first {limits.max_pdf_pages} of {pages} pages read (the page limit)")
            break
        text = (page.extract_text() or "").strip()
        if not text:
            blank += 1
            continue
        if not sink.add(f"## Page {number}\n\n{text}"):
            break
    if blank:
        sink.note(f"{blank} page(s) have no extractable text (scanned images or drawings)")
    return sink.result("pdf", pages=pages)


def _open_encrypted(reader: pypdf.PdfReader) -> None:
    try:
        opened = reader.decrypt("")
    except (DependencyError, NotImplementedError) as exc:
        raise DocumentError(f"the PDF uses an encryption this reader cannot open ({type(exc).__name__})", reason="encrypted",
                            hint="ask for a copy without a password") from None
    if opened == pypdf.PasswordType.NOT_DECRYPTED:
        raise DocumentError("the PDF is password-protected", reason="encrypted",
                            hint="ask the owner for a copy without a password")

