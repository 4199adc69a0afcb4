"""Documents built by the tests with the same libraries the readers use (and a PDF with pypdf)."""

from __future__ import annotations

import struct
from pathlib import Path

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject


def pdf(path: Path, pages: list[str], *, user_password: str | None = None, owner_password: str | None = None) -> Path:
    """A PDF whose pages show the given lines of text in Helvetica (one string per page).

    pypdf has no public call to draw text, so each page gets a hand-written content stream
    (`_add_object` is how pypdf itself registers an indirect object)."""
    writer = PdfWriter()
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})})
        lines = "".join(f"({_pdf_escape(line)}) Tj T* " for line in text.split("\n"))
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 11 Tf 14 TL 72 720 Td {lines}ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    if user_password is not None or owner_password is not None:
        writer.encrypt(user_password=user_password or "", owner_password=owner_password, algorithm="AES-128")
    with path.open("wb") as f:
        writer.write(f)
    return path


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def encrypted_office(path: Path) -> Path:
    """A compound file (CFB, MS-CFB) laid out as Office saves a password-protected .docx: a root
    entry and an `EncryptedPackage` stream (MS-OFFCRYPTO 2.3.4.4); the payload is filler."""
    sector = 512
    header = bytearray(sector)
    header[0:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    struct.pack_into("<HHHHH", header, 24, 0x3E, 3, 0xFFFE, 9, 6)  # minor, major v3, byte order, sector/mini shifts
    struct.pack_into("<I", header, 44, 1)  # one FAT sector
    struct.pack_into("<I", header, 48, 1)  # first directory sector
    struct.pack_into("<I", header, 56, 4096)  # mini stream cutoff
    struct.pack_into("<IIII", header, 60, 0xFFFFFFFE, 0, 0xFFFFFFFE, 0)  # no mini FAT, no DIFAT sectors
    struct.pack_into("<I", header, 76, 0)  # DIFAT[0]: the FAT is sector 0
    header[80:sector] = b"\xff" * (sector - 80)
    fat = bytearray(b"\xff" * sector)
    struct.pack_into("<IIII", fat, 0, 0xFFFFFFFD, 0xFFFFFFFE, 3, 0xFFFFFFFE)  # FAT, directory, stream 2->3
    directory = bytearray(sector)
    _dir_entry(directory, 0, "Root Entry", kind=5, child=1, start=0xFFFFFFFE, size=0)
    _dir_entry(directory, 1, "EncryptedPackage", kind=2, child=0xFFFFFFFF, start=2, size=2 * sector)
    payload = bytes(range(256)) * 4
    path.write_bytes(bytes(header) + bytes(fat) + bytes(directory) + payload)
    return path


def _dir_entry(buf: bytearray, index: int, name: str, *, kind: int, child: int, start: int, size: int) -> None:
    off = index * 128
    encoded = (name + "\0").encode("utf-16-le")
    buf[off:off + len(encoded)] = encoded
    struct.pack_into("<HBB", buf, off + 64, len(encoded), kind, 1)
    struct.pack_into("<III", buf, off + 68, 0xFFFFFFFF, 0xFFFFFFFF, child)
    struct.pack_into("<IQ", buf, off + 116, start, size)


def png(width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG, grey, built by hand (PNG spec: signature, IHDR, IDAT, IEND)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
