"""Bytes the sandbox keeps outside tenant.json: hosted images, OneDrive files, upload parts.

Content-addressed files under `{state_dir}/blobs/` (the key is the SHA-256 of the bytes), so
the tenant survives a restart with its files and two copies of one file cost one blob.
Upload sessions append to a part file under `{state_dir}/uploads/` until the last byte.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

BLOB_DIR = "blobs"
UPLOAD_DIR = "uploads"


def blob_path(state_dir: Path, key: str) -> Path:
    if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
        raise ValueError("not a blob key")
    return state_dir / BLOB_DIR / key[:2] / key


def put_blob(state_dir: Path, data: bytes) -> str:
    """Store `data` and return its key; written atomically, once."""
    key = hashlib.sha256(data).hexdigest()
    path = blob_path(state_dir, key)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".blob-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return key


def adopt_blob(state_dir: Path, source: Path) -> tuple[str, int]:
    """Move the file at `source` into the store, hashing it in chunks (memory stays flat for large
    uploads); returns its key and size. `source` is gone afterwards."""
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    key = digest.hexdigest()
    path = blob_path(state_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        source.unlink(missing_ok=True)
    else:
        os.replace(source, path)
    return key, size


def spool_path(state_dir: Path) -> Path:
    """A fresh file to stream a request body into before it becomes a blob (same filesystem: a rename)."""
    directory = state_dir / UPLOAD_DIR
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".spool-")
    os.close(fd)
    return Path(tmp)


def read_blob(state_dir: Path, key: str) -> bytes:
    return blob_path(state_dir, key).read_bytes()


def part_path(state_dir: Path, session_id: str) -> Path:
    """Where an upload session's bytes accumulate (session ids are hex)."""
    if not session_id.isalnum():
        raise ValueError("not an upload session id")
    return state_dir / UPLOAD_DIR / f"{session_id}.part"
