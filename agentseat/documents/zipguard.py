"""Zip bombs and XML tricks, refused before python-docx, openpyxl or python-pptx open a package.

The check reads only the central directory and the first bytes of each XML part. It relies on
the declared sizes: Python's zipfile stops inflating an entry at its declared `file_size` (and
then fails its CRC), so an entry cannot grow past what the directory says.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from ..errors import DocumentError
from .model import ReadLimits

_RATIO_FLOOR = 1024 * 1024  # small entries may compress as well as they like
_XML_PEEK = 1024
_STREAMED = ("xl/worksheets/",)  # openpyxl's read-only mode parses these incrementally
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9/._\[\]-]")


def check_package(path: Path, limits: ReadLimits) -> None:
    """Refuse a package whose entries would inflate too far, whose XML is too large to parse
    in memory, or whose XML declares a DTD."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            _check_sizes(infos, limits)
            _check_xml_size(infos, limits)
            for info in infos:
                if info.filename.endswith((".xml", ".rels")) and info.file_size:
                    _check_xml_head(z, info)
    except DocumentError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted zip entry; NotImplementedError: an unknown compression method.
        raise DocumentError(f"the document's zip container cannot be read ({type(exc).__name__})", reason="malformed",
                            hint="ask for the file to be saved again") from None


def _check_sizes(infos: list[zipfile.ZipInfo], limits: ReadLimits) -> None:
    if len(infos) > limits.max_zip_entries:
        raise DocumentError(f"the document holds {len(infos)} parts, more than {limits.max_zip_entries}",
                            reason="unsafe", hint="this looks like a zip bomb; it was not opened")
    total = sum(i.file_size for i in infos)
    if total > limits.max_unzipped_bytes:
        raise DocumentError(
            f"the document would unpack to {total // (1024 * 1024)} MB, more than "
            f"{limits.max_unzipped_bytes // (1024 * 1024)} MB",
            reason="unsafe", hint="this is either a zip bomb or too large to read; it was not opened")
    for info in infos:
        if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
            raise DocumentError(
                f"part {_part(info.filename)} inflates {info.file_size // max(info.compress_size, 1)}x, "
                f"more than {limits.max_zip_ratio:g}x",
                reason="unsafe", hint="this looks like a zip bomb; it was not opened")


def _check_xml_size(infos: list[zipfile.ZipInfo], limits: ReadLimits) -> None:
    parsed = sum(i.file_size for i in infos
                 if i.filename.endswith((".xml", ".rels")) and not i.filename.startswith(_STREAMED))
    if parsed > limits.max_xml_bytes:
        raise DocumentError(
            f"the document's text and layout take {parsed // (1024 * 1024)} MB of XML, more than the "
            f"{limits.max_xml_bytes // (1024 * 1024)} MB that can be read in memory",
            reason="too_large", hint="ask for a shorter document, or an extract of the part you need")


def _check_xml_head(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    # OOXML parts never carry a DTD (ECMA-376 Part 2 forbids it); one is an entity-expansion attempt.
    with z.open(info) as f:
        head = f.read(_XML_PEEK)
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        raise DocumentError(f"part {_part(info.filename)} declares a DTD, which Office documents never do",
                            reason="unsafe", hint="the file was not opened")


def _part(name: str) -> str:
    """A part name fit for an error message: entry names are chosen by whoever made the file."""
    return repr(_UNSAFE_NAME.sub("?", name)[:80])
