"""What a file really is, from its bytes: magic numbers and, for zips, the parts inside.

The name and MIME type are claims; the content decides. A Word file renamed `.txt` is read
as Word; a `.pdf` that is not a PDF is refused with a clear error. This module only looks.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DocumentError

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_SCAN_CHUNK = 1024 * 1024

_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

# The part each Office format cannot do without (ECMA-376 Part 2, the package's main part).
_OOXML_MAIN = (
    ("word/document.xml", "docx"),
    ("xl/workbook.xml", "xlsx"),
    ("ppt/presentation.xml", "pptx"),
)

_EXTENSIONS = {
    ".docx": "docx", ".docm": "docx", ".xlsx": "xlsx", ".xlsm": "xlsx", ".pptx": "pptx", ".pptm": "pptx",
    ".pdf": "pdf", ".png": "image", ".jpg": "image", ".jpeg": "image", ".gif": "image", ".webp": "image",
    ".doc": "legacy", ".xls": "legacy", ".ppt": "legacy",
    ".txt": "text", ".md": "text", ".markdown": "text", ".csv": "text", ".json": "text",
}
_MIMES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/pdf": "pdf",
}
_LABELS = {"docx": "a Word document", "xlsx": "an Excel workbook", "pptx": "a PowerPoint presentation",
           "pdf": "a PDF", "image": "an image", "legacy": "a legacy Office file", "text": "a text file"}


@dataclass(frozen=True)
class Sniffed:
    kind: str  # docx | xlsx | pptx | pdf | image | text
    mime: str | None = None  # images
    claimed: str | None = None  # what the name or MIME type said ("a PDF"), when it differs


def claimed_kind(name: str, mime: str | None) -> str | None:
    """The kind the name or MIME type claims, or None when they say nothing we know."""
    if mime:
        base = mime.split(";")[0].strip().lower()
        if base in _MIMES:
            return _MIMES[base]
        if base.startswith("image/"):
            return "image"
    return _EXTENSIONS.get(Path(name).suffix.lower())


def sniff(path: Path, *, name: str, mime: str | None) -> Sniffed:
    """Decide the kind from the content. Raises DocumentError for what cannot be read at all."""
    with path.open("rb") as f:
        head = f.read(2048)
    claimed = claimed_kind(name, mime)
    kind, found_mime = _by_magic(path, head, claimed)
    if kind is None:
        if claimed == "image":
            raise DocumentError(f"{name!r} is not an image that can be shown", reason="unsupported",
                                hint="images are read as PNG, JPEG, GIF or WebP; ask for one of those")
        if claimed not in (None, "text"):
            raise DocumentError(
                f"{name!r} is named as {_LABELS[claimed]} but its content is not one",
                reason="mismatch", hint="the file may be damaged or mislabelled; ask for the original")
        if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 text has NULs
            raise DocumentError(f"{name!r} is binary data of a type that cannot be read as a document",
                                reason="unsupported",
                                hint="readable: .docx .xlsx .pptx .pdf .md .txt .csv .json and images")
        return Sniffed("text")
    return Sniffed(kind, found_mime, _LABELS[claimed] if claimed not in (None, kind) else None)


def _by_magic(path: Path, head: bytes, claimed: str | None) -> tuple[str | None, str | None]:
    # PDF readers accept the header anywhere in the first 1024 bytes (PDF 32000-1, Annex H), but a
    # text file that merely mentions "%PDF-" is not a PDF: off the start, only when named as one.
    if head.lstrip()[:5] == b"%PDF-" or (claimed == "pdf" and b"%PDF-" in head[:1024]):
        return "pdf", None
    for magic, mime in _IMAGES:
        if head.startswith(magic):
            return "image", mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "image/webp"
    if head.startswith(_OLE_MAGIC):
        _refuse_ole(path)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _ooxml_kind(path), None
    return None, None


def _ooxml_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError(f"the zip container is damaged ({type(exc).__name__})", reason="malformed",
                            hint="ask for the file to be saved again") from None
    for part, kind in _OOXML_MAIN:
        if part in names:
            return kind
    raise DocumentError("a zip archive that is not a Word, Excel or PowerPoint document", reason="unsupported",
                        hint="readable: .docx .xlsx .pptx .pdf .md .txt .csv .json and images")


def _refuse_ole(path: Path) -> None:
    """OLE/CFB: a password-protected Office file (the OOXML package encrypted inside an
    `EncryptedPackage` stream, MS-OFFCRYPTO 2.3.4) or a legacy .doc/.xls/.ppt. Neither is read."""
    tail = b""
    with path.open("rb") as f:
        while chunk := f.read(_SCAN_CHUNK):
            if _ENCRYPTED_PACKAGE in tail + chunk:
                raise DocumentError("the document is password-protected", reason="encrypted",
                                    hint="ask the owner for a copy without a password")
            tail = chunk[-len(_ENCRYPTED_PACKAGE):]
    raise DocumentError("a legacy binary Office file (.doc, .xls or .ppt), which cannot be read",
                        reason="unsupported", hint="ask for it saved as .docx, .xlsx or .pptx")
