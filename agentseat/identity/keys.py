"""The agent's certificate and private key: generation and safe storage in `<state_dir>/keys/`.

The key is only ever on disk as an encrypted PKCS#8 file (0600) whose random passphrase sits in
the OS keyring, else comes from AGENTSEAT_KEY_PASSPHRASE. Uploading certificates (provision.py)
and minting tokens (tokens.py) live elsewhere. All of it is synchronous and may block (keyring
over D-Bus, fsync): async callers use `anyio.to_thread.run_sync`.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import datetime as dt
import hashlib
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import keyring
import structlog
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, NoEncryption, PrivateFormat
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import NameOID
from keyring.backend import KeyringBackend
from keyring.backends.chainer import ChainerBackend
from keyring.errors import KeyringError

from agentseat.config import Settings
from agentseat.errors import KeyStoreError

log = structlog.get_logger(__name__)

_SHA1 = re.compile(r"[0-9A-F]{40}")
_ENCRYPTED_PEM = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
_SETUP_HINT = "run `agentseat setup` to create and register a certificate"
_USERNAME = "key-passphrase:{}"  # keyring username of a key's passphrase, by SHA-1
#: Keys this process decrypted, by the digests of the encrypted file and its passphrase: `serve`'s
#: preflight and its runtime each load the key, and each derivation costs ~90 ms of a cold start.
#: The same bytes with the same passphrase decrypt to the same key; anything else misses.
_DECRYPTED: dict[tuple[bytes, bytes], rsa.RSAPrivateKey] = {}
# These keep nothing (fail, null) or keep it in a file as mere base64 (keyrings.alt): python-ecosystem §5.
_UNTRUSTED_KEYRING_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")
# Mode and owner bits mean nothing on Windows, where %LOCALAPPDATA% is per-user by ACL.
_POSIX = os.name == "posix"


@dataclass(frozen=True, eq=False)
class AgentCertificate:
    """A private key and its self-signed certificate, in memory.

    `sha1_thumbprint` is uppercase hex (Entra keyCredentials, msal's "thumbprint"); `sha256_thumbprint`
    is base64url without padding (a JWT's `x5t#S256`); `der_b64` is the base64 DER for keyCredentials
    `key` and Graph's `encryptionCertificate`."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate

    @property
    def sha1_thumbprint(self) -> str:
        return _sha1_of(self.certificate)

    @property
    def sha256_thumbprint(self) -> str:
        return _sha256_of(self.certificate)

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def der_b64(self) -> str:
        return base64.b64encode(self.certificate.public_bytes(Encoding.DER)).decode("ascii")

    @property
    def cert_pem(self) -> str:
        return self.certificate.public_bytes(Encoding.PEM).decode("ascii")


@dataclass(frozen=True)
class StoredCertificate:
    """One certificate in the key store, as `KeyStore.list` reports it."""

    sha1: str
    sha256_thumbprint: str
    not_after: dt.datetime
    active: bool


def generate_certificate(common_name: str, *, days: int = 365) -> AgentCertificate:
    """Make an RSA-2048 key and a self-signed certificate for it, valid for `days` days."""
    if not common_name.strip() or days < 1:
        raise ValueError("need a non-empty common_name and days >= 1")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    # Key encipherment: Graph wraps each rich notification's AES key with this certificate.
    usage = x509.KeyUsage(
        digital_signature=True, key_encipherment=True, content_commitment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated so a verifier whose clock runs a little slow accepts it at once.
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return AgentCertificate(private_key=key, certificate=certificate)


class KeyStore:
    """Certificates and encrypted private keys under `<state_dir>/keys/`.

    Files: `<SHA1>.crt.pem`, `<SHA1>.key.pem` (encrypted PKCS#8, 0600) and `active`. Several may be
    stored at once, so a rotation can register the new certificate before retiring the old. The
    API is synchronous and blocking (keyring, file IO): async code calls it via `anyio.to_thread.run_sync`.
    """

    def __init__(self, settings: Settings) -> None:
        self.dir = Path(settings.state_dir) / "keys"
        self._service = settings.keyring_service
        secret = settings.key_passphrase.get_secret_value() if settings.key_passphrase else ""
        self._setting_passphrase = secret or None
        self._active_path = self.dir / "active"

    def add(self, cert: AgentCertificate) -> StoredCertificate:
        """Store `cert` beside the others. Only the first becomes active by itself, so a
        rotation can append the new certificate in Entra before the agent switches to it."""
        sha1 = cert.sha1_thumbprint
        self._ensure_dir()
        key_path, cert_path = self._paths(sha1)
        if key_path.exists() or cert_path.exists():
            raise KeyStoreError(f"certificate {sha1} is already stored", hint="generate a new certificate to rotate")
        passphrase, source = self._new_passphrase(sha1)
        try:
            # Encrypted in memory before the first byte is written: no plaintext key on disk.
            encryption = BestAvailableEncryption(passphrase.encode("utf-8"))
            encrypted = cert.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
            _write_atomic(key_path, encrypted, 0o600)
            _write_atomic(cert_path, cert.cert_pem.encode("ascii"), 0o644)
            activate = not self._active_path.exists()
            if activate:
                _write_atomic(self._active_path, f"{sha1}\n".encode("ascii"), 0o644)
        except BaseException as exc:
            # Leave nothing half-stored: no key without its certificate, no orphan passphrase.
            for path in (key_path, cert_path):
                path.unlink(missing_ok=True)
            if source == "keyring":
                _forget_passphrase(self._service, sha1)
            if isinstance(exc, OSError):
                raise KeyStoreError(f"cannot write {self.dir}: {exc.strerror}", hint="check disk and rights") from None
            raise
        log.info("certificate_stored", thumbprint=sha1, passphrase_source=source, active=activate)
        return StoredCertificate(sha1, cert.sha256_thumbprint, cert.not_after, activate)

    def list(self) -> builtins.list[StoredCertificate]:
        """The stored certificates, soonest expiry first. Reads no private key."""
        if not self.dir.exists():
            return []
        self._check_dir()
        active, stored = self.active(), []
        for path in self.dir.glob("*.crt.pem"):
            sha1 = path.name.removesuffix(".crt.pem")
            if _SHA1.fullmatch(sha1):
                cert = self._read_cert(path, sha1)
                stored.append(StoredCertificate(sha1, _sha256_of(cert), cert.not_valid_after_utc, sha1 == active))
        return sorted(stored, key=lambda item: (item.not_after, item.sha1))

    def active(self) -> str | None:
        """The active thumbprint, from the `active` file; None before the first `add`."""
        try:
            if self.dir.exists():
                self._check_dir()
            text = self._active_path.read_text("ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyStoreError(f"cannot read {self._active_path}: {exc}", hint=_SETUP_HINT) from None
        return _normalise(text)

    def set_active(self, sha1: str) -> None:
        """Make `sha1` the certificate the agent signs in with. It must load first."""
        sha1 = self.load(sha1).sha1_thumbprint
        _write_atomic(self._active_path, f"{sha1}\n".encode("ascii"), 0o644)
        log.info("active_certificate_set", thumbprint=sha1)

    def retire(self, sha1: str) -> None:
        """Delete a certificate, its key and its keyring entry; never the active one.
        Local only: removing it from Entra's keyCredentials is provisioning's job."""
        sha1 = _normalise(sha1)
        if sha1 == self.active():
            raise KeyStoreError(f"refusing to retire {sha1}: it is the active certificate",
                                hint="make the new certificate active first (set_active), then retire the old one")
        self._check_dir()
        key_path, cert_path = self._paths(sha1)
        if not key_path.exists() and not cert_path.exists():
            raise KeyStoreError(f"no certificate {sha1} in {self.dir}", hint="`agentseat status` lists stored ones")
        # Key first, certificate last: if we stop half-way, `list` still shows what is left.
        key_path.unlink(missing_ok=True)
        _forget_passphrase(self._service, sha1)
        cert_path.unlink(missing_ok=True)
        log.info("certificate_retired", thumbprint=sha1)

    def load(self, sha1: str | None = None) -> AgentCertificate:
        """Load and decrypt the active certificate and key (or those of `sha1`)."""
        sha1 = _normalise(sha1) if sha1 is not None else self.active()
        if sha1 is None:
            raise KeyStoreError(f"no active certificate in {self.dir}", hint=_SETUP_HINT)
        self._check_dir()
        key_path, cert_path = self._paths(sha1)
        data = _read_private(key_path)
        cert = self._read_cert(cert_path, sha1)
        key = self._decrypt(data, key_path, sha1)
        if key.public_key().public_numbers() != cert.public_key().public_numbers():
            raise KeyStoreError(f"{cert_path} does not belong to the private key in {key_path}",
                                hint=f"restore the original certificate, or retire {sha1} and {_SETUP_HINT}")
        return AgentCertificate(private_key=key, certificate=cert)

    def load_pem_credential(self, sha1: str | None = None) -> dict[str, str]:
        """msal's certificate `client_credential`: `{"private_key": PEM, "thumbprint": SHA-1}`.
        The PEM is unencrypted: keep it in memory, never log or persist it."""
        cert = self.load(sha1)
        pem = cert.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode("ascii")
        return {"private_key": pem, "thumbprint": cert.sha1_thumbprint}

    def _paths(self, sha1: str) -> tuple[Path, Path]:
        return self.dir / f"{sha1}.key.pem", self.dir / f"{sha1}.crt.pem"

    def _ensure_dir(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._check_dir()
        os.chmod(self.dir, 0o700)  # mkdir's mode is masked by the umask; tightening 0755 loses nothing

    def _check_dir(self) -> None:
        # A directory others can write to lets them swap in their own key and certificate.
        try:
            st = os.stat(self.dir)
        except FileNotFoundError:
            raise KeyStoreError(f"no key store at {self.dir}", hint=_SETUP_HINT) from None
        _refuse_unless_private(self.dir, st, 0o022, "replace keys in it", f"chmod 700 {self.dir}")

    def _read_cert(self, path: Path, sha1: str) -> x509.Certificate:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (FileNotFoundError, ValueError) as exc:
            problem = "is missing" if isinstance(exc, FileNotFoundError) else "is not a PEM certificate"
            raise KeyStoreError(f"certificate {path} {problem}", hint=_SETUP_HINT) from None
        if _sha1_of(cert) != sha1:
            raise KeyStoreError(f"{path} holds a certificate with another thumbprint", hint=_SETUP_HINT)
        return cert

    def check_can_store(self) -> None:
        """Raise the error `add` would give for want of a passphrase home (no secure keyring and no
        AGENTSEAT_KEY_PASSPHRASE), so setup can refuse before it changes anything."""
        if _trusted_keyring() is None and not self._setting_passphrase:
            raise _nowhere_safe()

    def _new_passphrase(self, sha1: str) -> tuple[str, str]:
        # Only this short passphrase goes to the keyring, never the PEM: Windows Credential
        # Manager caps a blob at 2560 bytes and an RSA-2048 PEM is ~1700 UTF-16 characters.
        backend = _trusted_keyring()
        if backend is not None:
            passphrase = secrets.token_urlsafe(32)
            try:
                backend.set_password(self._service, _USERNAME.format(sha1), passphrase)
                return passphrase, "keyring"
            except KeyringError as exc:
                log.warning("keyring_write_failed", backend=str(backend), error=type(exc).__name__)
        if self._setting_passphrase:
            return self._setting_passphrase, "setting"
        raise _nowhere_safe()

    def _decrypt(self, data: bytes, path: Path, sha1: str) -> rsa.RSAPrivateKey:
        username = _USERNAME.format(sha1)
        entry = f"keyring entry {username!r} (service {self._service!r})"
        # The keyring entry if there is one, else the setting (a key saved without a keyring).
        passphrase, source = _keyring_get(self._service, username), entry
        if not passphrase:
            passphrase, source = self._setting_passphrase, "AGENTSEAT_KEY_PASSPHRASE"
        if not passphrase:
            raise KeyStoreError(f"no passphrase for {path}: no {entry} and AGENTSEAT_KEY_PASSPHRASE is not set",
                                hint=f"set AGENTSEAT_KEY_PASSPHRASE to the key's passphrase, or {_SETUP_HINT}")
        memo = (hashlib.sha256(data).digest(), hashlib.sha256(passphrase.encode("utf-8")).digest())
        if (known := _DECRYPTED.get(memo)) is not None:
            return known
        try:
            key = load_pem_private_key(data, password=passphrase.encode("utf-8"))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # cryptography raises ValueError alike for a wrong passphrase and a damaged file.
            raise KeyStoreError(f"cannot decrypt {path} with the passphrase from {source}: wrong passphrase "
                                "or damaged file", hint="use the passphrase the key was saved with "
                                f"(AGENTSEAT_KEY_PASSPHRASE or the keyring entry), or {_SETUP_HINT}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyStoreError(f"{path} does not hold an RSA key", hint=_SETUP_HINT)
        _DECRYPTED[memo] = key
        return key


def _nowhere_safe() -> KeyStoreError:
    return KeyStoreError(
        "nowhere safe to keep the private key's passphrase: no secure keyring is usable (backend: "
        f"{keyring.get_keyring()}) and AGENTSEAT_KEY_PASSPHRASE is not set",
        hint="either set AGENTSEAT_KEY_PASSPHRASE to a long random secret (`python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'`) and guard it like the key, or run where an OS keyring works "
        "(macOS Keychain, Windows Credential Manager, Secret Service with a D-Bus session)",
    )


def _sha1_of(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def _sha256_of(cert: x509.Certificate) -> str:
    return base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode("ascii")


def _normalise(sha1: str) -> str:
    """Accept `ab:cd:...` or lowercase; the result is also safe inside a file name."""
    value = sha1.replace(":", "").replace(" ", "").upper()
    if not _SHA1.fullmatch(value):
        raise KeyStoreError(f"{sha1!r} is not a SHA-1 thumbprint", hint="`agentseat status` lists them")
    return value


def _is_trusted(backend: KeyringBackend) -> bool:
    if isinstance(backend, ChainerBackend):  # it writes to the first link that accepts: all must be safe
        return bool(backend.backends) and all(_is_trusted(link) for link in backend.backends)
    module = type(backend).__module__
    if any(module == bad or module.startswith(bad + ".") for bad in _UNTRUSTED_KEYRING_MODULES):
        return False
    with contextlib.suppress(Exception):  # keyring's own rule: priority < 1 means "not recommended"
        return float(backend.priority) >= 1  # type: ignore[arg-type]
    return False  # nor is a backend that cannot tell its priority


def _trusted_keyring() -> KeyringBackend | None:
    backend = keyring.get_keyring()
    return backend if _is_trusted(backend) else None


def _keyring_get(service: str, username: str) -> str | None:
    backend = _trusted_keyring()
    try:
        return backend.get_password(service, username) if backend is not None else None
    except KeyringError as exc:  # a locked or broken keyring reads as "no entry", loudly
        log.warning("keyring_read_failed", backend=str(backend), error=type(exc).__name__)
        return None


def _forget_passphrase(service: str, sha1: str) -> None:
    # Best effort: the entry may not exist or the keyring be gone; without its key it unlocks nothing.
    with contextlib.suppress(KeyringError):
        keyring.get_keyring().delete_password(service, _USERNAME.format(sha1))


def _refuse_unless_private(path: Path, st: os.stat_result, forbidden: int, risk: str, fix: str) -> None:
    if not _POSIX:
        return
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.getuid():
        raise KeyStoreError(f"refusing to use {path} (mode {mode:04o}): owned by uid {st.st_uid}, "
                            f"not by you (uid {os.getuid()})", hint=f"chown {os.getuid()} {path} && {fix}")
    if mode & forbidden:
        raise KeyStoreError(f"refusing to use {path}: mode {mode:04o} lets group or other users {risk}", hint=fix)


def _read_private(path: Path) -> bytes:
    """Read a key file, refusing it unless only the current user, its owner, can read it."""
    try:
        # O_NOFOLLOW plus fstat: judge the very file we read, not what a symlink points at.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:  # ENOENT, or ELOOP for a symlink
        problem = "no private key at" if isinstance(exc, FileNotFoundError) else f"{exc.strerror}:"
        raise KeyStoreError(f"{problem} {path}", hint=_SETUP_HINT) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KeyStoreError(f"refusing to use {path}: not a regular file", hint=_SETUP_HINT)
        _refuse_unless_private(path, st, 0o077, "read the private key", f"chmod 600 {path}")
        data = fh.read()
    if not data.startswith(_ENCRYPTED_PEM):
        raise KeyStoreError(f"refusing to use {path}: it is not an encrypted PKCS#8 key",
                            hint=f"delete it and {_SETUP_HINT}; agentseat never keeps a key unencrypted on disk")
    return data


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data`: a crash leaves the old file or the new one, never half.
    mkstemp creates the file 0600 beside the target: the rename is atomic, the bytes never public."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            if mode != 0o600 and _POSIX:
                os.fchmod(fh.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if _POSIX:  # makes the rename itself durable; Windows cannot open a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
