"""Which local files the agent may send, checked before anything leaves the device.

The model names paths, and the model can be talked into naming the wrong ones by anyone who
writes to it. So each path is resolved (symlinks followed, `Path.resolve(strict=True)`) and
refused when it is not a regular readable file, is too large, or is a secret: anything inside
the agent's own state (inbox, keys, access lists, locks), its config and passphrase files,
the provisioner's key and certificate; key, certificate and credential files anywhere (by
name, by folder, and by a PEM private-key or certificate block in the first bytes). Both the
path as given and its target are checked, so a symlink into the state dir is refused too, and
the file read is the file checked (same device and inode, opened without following links).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import anyio

from ..config import Settings
from ..errors import ToolInputError
from .names import safe_name

MAX_FILES = 10
#: Largest file sent as a OneDrive upload.
MAX_FILE_BYTES = 100 * 1024 * 1024
#: Largest image sent inline. Graph refuses request bodies over 4 MB, and hostedContents travel
#: base64-encoded inside the message POST (4/3 larger), so 3 MB of image is the most that fits.
INLINE_IMAGE_MAX = 3 * 1024 * 1024
#: PNG, JPEG and GIF by their magic bytes: what Teams shows inline (chat-post-messages, inline image).
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"))
_SECRET_NAMES = frozenset({
    ".env", "agentseat.env", "sandbox.env", ".netrc", "_netrc", ".pgpass", ".git-credentials", ".npmrc", ".pypirc",
    "credentials", "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk", "authorized_keys",
})
_SECRET_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".crt", ".cer", ".der", ".p8", ".ppk",
                    ".kdbx", ".gpg", ".env")
_SECRET_DIRS = frozenset({".ssh", ".gnupg", ".aws", ".azure", ".kube", ".docker", ".password-store", "gcloud",
                          "python_keyring", "keyrings"})
_PEM_MARKERS = (b"PRIVATE KEY-----", b"-----BEGIN CERTIFICATE-----", b"PGP PRIVATE KEY BLOCK")
_SNIFF = 64 * 1024


@dataclass(frozen=True)
class LocalFile:
    """A local file that passed every check: read it only through `read`."""

    path: Path
    name: str
    size: int
    #: image/png, image/jpeg or image/gif when it can go inline; None for any other file.
    image_type: str | None
    _dev: int
    _ino: int

    async def read(self, offset: int, length: int) -> bytes:
        return await anyio.to_thread.run_sync(self._read, offset, length)

    def _read(self, offset: int, length: int) -> bytes:
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (self._dev, self._ino) or st.st_size != self.size:
                raise ToolInputError(f"{self.path} changed after it was checked; nothing was sent",
                                     hint="send it again once it stops changing")
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)


def _refuse(path: str, why: str, hint: str = "send another file") -> ToolInputError:
    return ToolInputError(f"files: refused {path}: {why}", hint=hint)


def _protected(settings: Settings) -> list[tuple[Path, str]]:
    """The agent's own state and secrets, each with what it is."""
    out = [(settings.state_dir, "the agent's state directory (inbox, keys, access lists)")]
    for path, what in ((settings.config_file, "the agent's config file"),
                       (settings.key_passphrase_file, "the key passphrase file"),
                       (settings.provisioner_key_path, "the provisioner's key"),
                       (settings.provisioner_cert_path, "the provisioner's certificate")):
        if path is not None:
            out.append((path, what))
    return out


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _guarded_by(paths: tuple[Path, ...], settings: Settings) -> str | None:
    for root, what in _protected(settings):
        roots = {Path(os.path.abspath(root.expanduser())), root.expanduser().resolve()}
        if any(_inside(p, r) for p in paths for r in roots):
            return what
    return None


def _secret_name(path: Path) -> str | None:
    name = path.name.lower()
    if name in _SECRET_NAMES or name.startswith(".env.") or name.endswith(_SECRET_SUFFIXES):
        return "a key, certificate or credentials file"
    if _SECRET_DIRS & {part.lower() for part in path.parts[:-1]}:
        return "inside a folder that holds keys or credentials"
    return None


def _sniff(head: bytes) -> str | None:
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def check_file(raw: str, settings: Settings, cwd: Path | None = None) -> LocalFile:
    """`raw` as a file that may be sent, or a ToolInputError saying why not. Reads only its first bytes."""
    given = Path(raw).expanduser()
    lexical = Path(os.path.abspath((cwd or Path.cwd()) / given))
    try:
        resolved = lexical.resolve(strict=True)
    except FileNotFoundError:
        raise _refuse(raw, "no such file", "give the path of an existing file") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a path too long
        raise _refuse(raw, f"cannot resolve it ({type(exc).__name__})") from None
    if (what := _guarded_by((lexical, resolved), settings)) is not None:
        raise _refuse(raw, f"it is inside {what}, which is never sent",
                      "the agent's own state and keys never leave the device; send another file")
    for path in (lexical, resolved):
        if (why := _secret_name(path)) is not None:
            raise _refuse(raw, f"it is {why}", "keys and credentials are never sent; send another file")
    try:
        st = resolved.stat()
    except OSError as exc:
        raise _refuse(raw, f"cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(raw, "it is not a regular file", "send a file, not a folder or device")
    if st.st_size > MAX_FILE_BYTES:
        raise _refuse(raw, f"it is {st.st_size} bytes; the limit is {MAX_FILE_BYTES}", "send a smaller file")
    try:
        with resolved.open("rb") as fh:
            head = fh.read(_SNIFF)
    except OSError as exc:
        raise _refuse(raw, f"cannot read it ({exc.strerror or type(exc).__name__})",
                      "check the file's permissions") from None
    if any(marker in head for marker in _PEM_MARKERS):
        raise _refuse(raw, "it holds a private key or certificate", "keys are never sent; send another file")
    image = _sniff(head)
    return LocalFile(resolved, safe_name(resolved.name, "file"), st.st_size,
                     image if image and st.st_size <= INLINE_IMAGE_MAX else None, st.st_dev, st.st_ino)


def check_files(raws: list[str], settings: Settings, cwd: Path | None = None) -> list[LocalFile]:
    """Every path checked before any is sent: one refusal sends nothing."""
    if len(raws) > MAX_FILES:
        raise ToolInputError(f"files: at most {MAX_FILES} per message", hint="send them in several messages")
    return [check_file(raw, settings, cwd) for raw in raws]
