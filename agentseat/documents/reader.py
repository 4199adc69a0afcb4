"""`read_document`: one entry point that sizes, sniffs, guards and dispatches a file to its reader.

Every failure becomes a `DocumentError` that says why (too large, encrypted, unsafe, malformed,
unsupported, mislabelled); no library traceback escapes. Blocking: callers on the event loop run
this through `anyio.to_thread.run_sync`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from importlib import import_module
from pathlib import Path

import structlog

from ..errors import DocumentError
from .model import DocumentText, ReadLimits
from .sniff import sniff
from .text_reader import read_text
from .zipguard import check_package

log = structlog.get_logger(__name__)

#: Each format's reader, imported on first use: python-docx, openpyxl, python-pptx and pypdf
#: take about a quarter of a second to import, which `serve` must not pay before `initialize`.
_READERS = {"docx": ".docx_reader:read_docx", "xlsx": ".xlsx_reader:read_xlsx", "pptx": ".pptx_reader:read_pptx",
            "pdf": ".pdf_reader:read_pdf"}
_OFFICE = frozenset({"docx", "xlsx", "pptx"})
_LABELS = {"docx": "a Word document", "xlsx": "an Excel workbook", "pptx": "a PowerPoint presentation",
           "pdf": "a PDF", "image": "an image", "text": "a text file"}


def read_document(path: Path, *, name: str, mime: str | None, limits: ReadLimits) -> DocumentText:
    """Read `path` (whose original file name is `name`) as markdown, or an image as bytes."""
    size = _size(path, name, limits)
    sniffed = sniff(path, name=name, mime=mime)
    try:
        if sniffed.kind in _OFFICE:
            check_package(path, limits)
            result = _reader(sniffed.kind)(path, limits)
        elif sniffed.kind == "pdf":
            result = _reader("pdf")(path, limits)
        elif sniffed.kind == "image":
            result = _image(path, name, size, sniffed.mime or "application/octet-stream", limits)
        else:
            result = read_text(path, name=name, mime=mime, limits=limits)
    except DocumentError:
        raise
    except MemoryError:
        raise DocumentError(f"{name!r} is too large to read in memory", reason="too_large",
                            hint="ask for a smaller file or an extract") from None
    except Exception as exc:  # noqa: BLE001 - a hostile or damaged file must never surface a traceback
        log.info("document_unreadable", kind=sniffed.kind, error=type(exc).__name__)
        # Only the exception's type: a library's message can quote the document, which is untrusted.
        raise DocumentError(f"{name!r} looks like {_LABELS[sniffed.kind]} but cannot be read "
                            f"({type(exc).__name__})",
                            reason="malformed", hint="the file may be damaged; ask for it to be saved again") from None
    if sniffed.claimed:
        note = f"named as {sniffed.claimed} but the content is {_LABELS[sniffed.kind]}; read as what it is"
        result = replace(result, notes=[note, *result.notes])
    log.info("document_read", kind=result.kind, bytes=size, chars=len(result.markdown), truncated=result.truncated)
    return result


def _reader(kind: str) -> Callable[[Path, ReadLimits], DocumentText]:
    module, _, name = _READERS[kind].partition(":")
    return getattr(import_module(module, __package__), name)  # type: ignore[no-any-return]


def _size(path: Path, name: str, limits: ReadLimits) -> int:
    try:
        if not path.is_file():
            raise FileNotFoundError(2, "not a file")
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentError(f"{name!r} cannot be opened ({exc.strerror})", reason="malformed",
                            hint="check that the file exists and is readable") from None
    if size > limits.max_input_bytes:
        raise DocumentError(
            f"{name!r} is {size / 1048576:.1f} MB, over the {limits.max_input_bytes / 1048576:.0f} MB read limit",
            reason="too_large", hint="ask for a smaller file, or an extract of the part you need")
    return size


def _image(path: Path, name: str, size: int, mime: str, limits: ReadLimits) -> DocumentText:
    if size > limits.max_image_bytes:
        raise DocumentError(
            f"image {name!r} is {size / 1048576:.1f} MB, over the {limits.max_image_bytes / 1048576:.0f} MB "
            "image limit", reason="too_large", hint="ask for a smaller or compressed image")
    return DocumentText(markdown=f"[image {name}: {mime}, {size} bytes]", kind="image",
                        data=path.read_bytes(), mime=mime)

