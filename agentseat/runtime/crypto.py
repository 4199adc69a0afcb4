"""Rich-notification crypto: decrypting Graph's `encryptedContent`, and producing it.

Owns the byte-level algorithm of "Decrypting resource data"
(learn.microsoft.com/graph/change-notifications-with-resource-data) in both
directions: `decrypt_content` for the runtime, `encrypt_content` for the sandbox
that emulates Graph. It also owns `KeyRing`, which picks the private key a
notification was encrypted for, so certificate rotation works.

It does not own where keys live (identity/keys.py), parsing notifications
(graph/models.py) or deciding whether a notification is trusted (runtime/verify.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

if TYPE_CHECKING:
    from agentseat.graph.models import EncryptedContent

__all__ = [
    "DecryptionError",
    "KeyRing",
    "decrypt_content",
    "encrypt_content",
    "sha1_thumbprint",
    "sha256_thumbprint_b64url",
]

log = structlog.get_logger(__name__)

# dataKey is wrapped with "RSA/ECB/OAEPWithSHA1AndMGF1Padding"
# (changeNotificationEncryptedContent resource); OAEP-SHA256 does not decrypt it.
_OAEP_SHA1 = asym_padding.OAEP(mgf=asym_padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
_KEY_BYTES = 32  # AES-256 (change-notifications-with-resource-data, "Decrypting resource data")
_IV_BYTES = 16
_BLOCK_BITS = 128
_SIGNATURE_BYTES = 32  # HMAC-SHA256


class DecryptionError(ValueError):
    """`encryptedContent` could not be authenticated or decrypted.

    `reason` is a short, loggable code (`missing_field`, `bad_base64`, `bad_length`,
    `unknown_certificate`, `bad_key`, `bad_signature`, `bad_padding`). The message
    never contains key material, ciphertext or plaintext.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"encrypted content rejected: {reason}")
        self.reason = reason


def sha1_thumbprint(cert: x509.Certificate) -> str:
    """Uppercase hex SHA-1 of the certificate's DER: Graph's `encryptionCertificateThumbprint`."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def sha256_thumbprint_b64url(cert: x509.Certificate) -> str:
    """Unpadded base64url SHA-256 of the certificate's DER (the JOSE `x5t#S256` form)."""
    return base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode("ascii")


def _normalise_thumbprint(thumbprint: str) -> str:
    # Windows and PowerShell show thumbprints with spaces or colons and in either case.
    return thumbprint.replace(":", "").replace(" ", "").upper()


def _field(encrypted: EncryptedContent | Mapping[str, Any], alias: str, attr: str) -> Any:
    if isinstance(encrypted, Mapping):
        value = encrypted.get(alias)
        return encrypted.get(attr) if value is None else value
    return getattr(encrypted, attr, None)


def _b64(value: Any) -> bytes:
    if value is None:
        raise DecryptionError("missing_field")
    if not isinstance(value, (str, bytes)):
        raise DecryptionError("bad_base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        raise DecryptionError("bad_base64") from None


def decrypt_content(encrypted: EncryptedContent | Mapping[str, Any], private_key: RSAPrivateKey) -> bytes:
    """Authenticate and decrypt one `encryptedContent`; return the plaintext (UTF-8 JSON).

    Accepts the parsed model or the raw JSON mapping. Every failure raises
    `DecryptionError`; nothing else escapes. The cheap checks run before the
    RSA operation so garbage costs no private-key work.
    """
    if not isinstance(private_key, RSAPrivateKey):
        raise DecryptionError("bad_key")
    wrapped_key = _b64(_field(encrypted, "dataKey", "data_key"))
    ciphertext = _b64(_field(encrypted, "data", "data"))
    signature = _b64(_field(encrypted, "dataSignature", "data_signature"))
    if not ciphertext or len(ciphertext) % (_BLOCK_BITS // 8):
        raise DecryptionError("bad_length")
    if len(signature) != _SIGNATURE_BYTES:
        raise DecryptionError("bad_signature")
    if len(wrapped_key) != private_key.key_size // 8:
        raise DecryptionError("bad_key")

    # The GIL, measured for the pin (check again whenever the pin moves: bench/hotpath.py,
    # `rsa_threads`, in every `python -m bench` run). cryptography 50.0.2, CPython 3.11, 2 cores,
    # 2026-12-07: this unwrap RELEASES the GIL (two threads with a 10 s switch interval took
    # 58-526 turns in 2 x 300 calls, a GIL-holding control 1; on an idle moment two threads
    # decrypted 6,001/s against 3,193/s for one, 1.88x); AES-CBC and HMAC of a
    # notification (< 2 KB) hold it (1 turn) but cost tens of microseconds. The unwrap is about
    # 295 us of CPU, so the pipeline's one worker-thread call (runtime/batch.py) already runs
    # it beside the event loop, on the second core. A process pool was measured as well
    # (CPU of our own process per item, the child's excluded): 93-191 us at batch 1 against
    # ~35 us held by the GIL in the thread; 9-20 us at batch 20. It does not pay at batch 1,
    # saves ~3% of an item's CPU at batch 20, and would put the private key in a second
    # process: not used.
    try:
        key = private_key.decrypt(wrapped_key, _OAEP_SHA1)
    except ValueError:
        raise DecryptionError("bad_key") from None
    if len(key) != _KEY_BYTES:
        raise DecryptionError("bad_key")

    # Verify before decrypting: on a mismatch "assume the payload is tampered with"
    # (change-notifications-with-resource-data, "Decrypting resource data").
    expected = hmac.new(key, ciphertext, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise DecryptionError("bad_signature")

    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:_IV_BYTES])).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(_BLOCK_BITS).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptionError("bad_padding") from None


def encrypt_content(plaintext: bytes, certificate: x509.Certificate, certificate_id: str) -> dict[str, str]:
    """Produce a Graph-shaped `encryptedContent` for `certificate` (the sandbox's side).

    Mirrors Graph: a fresh 32-byte key per item, AES-256-CBC with IV = key[:16]
    and PKCS7, HMAC-SHA256 over the ciphertext, the key wrapped with RSA-OAEP-SHA1.
    """
    public_key = certificate.public_key()
    if not isinstance(public_key, RSAPublicKey):
        raise ValueError("Graph encrypts resource data only for RSA certificates")
    key = os.urandom(_KEY_BYTES)
    padder = sym_padding.PKCS7(_BLOCK_BITS).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:_IV_BYTES])).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return {
        "data": base64.b64encode(ciphertext).decode("ascii"),
        "dataSignature": base64.b64encode(hmac.new(key, ciphertext, hashlib.sha256).digest()).decode("ascii"),
        "dataKey": base64.b64encode(public_key.encrypt(key, _OAEP_SHA1)).decode("ascii"),
        "encryptionCertificateId": certificate_id,
        "encryptionCertificateThumbprint": sha1_thumbprint(certificate),
    }


class KeyRing:
    """Private keys that notifications may be encrypted for, by certificate id and thumbprint.

    During rotation "the old certificate might still be used for encryption for
    some time" (change-notifications-with-resource-data, "Managing encryption
    keys"), so old and new keys are both held until the old one is removed.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, RSAPrivateKey] = {}
        self._by_thumbprint: dict[str, RSAPrivateKey] = {}

    def add(
        self,
        private_key: RSAPrivateKey,
        *,
        certificate: x509.Certificate | None = None,
        certificate_id: str | None = None,
        thumbprint: str | None = None,
    ) -> None:
        """Register a key under a certificate id and/or thumbprint (derived from `certificate` if given)."""
        if not isinstance(private_key, RSAPrivateKey):
            raise TypeError("rich notifications need an RSA private key")
        if certificate is not None:
            thumbprint = thumbprint or sha1_thumbprint(certificate)
        if not certificate_id and not thumbprint:
            raise ValueError("a key needs a certificate id, a thumbprint or a certificate to be found by")
        if certificate_id:
            self._by_id[certificate_id] = private_key
        if thumbprint:
            self._by_thumbprint[_normalise_thumbprint(thumbprint)] = private_key

    def remove(self, *, certificate_id: str | None = None, thumbprint: str | None = None) -> None:
        """Forget a retired key once no subscription references it."""
        if certificate_id:
            self._by_id.pop(certificate_id, None)
        if thumbprint:
            self._by_thumbprint.pop(_normalise_thumbprint(thumbprint), None)

    def __len__(self) -> int:
        return len({id(key) for key in (*self._by_id.values(), *self._by_thumbprint.values())})

    def entries(self) -> list[tuple[RSAPrivateKey, list[str], list[str]]]:
        """Each key once, with the certificate ids and thumbprints it is found by (an intake
        process gets its ring this way: agentseat/intake_workers/wire.py)."""
        keys: dict[int, tuple[RSAPrivateKey, list[str], list[str]]] = {}
        for certificate_id, key in self._by_id.items():
            keys.setdefault(id(key), (key, [], []))[1].append(certificate_id)
        for thumbprint, key in self._by_thumbprint.items():
            keys.setdefault(id(key), (key, [], []))[2].append(thumbprint)
        return list(keys.values())

    def find(self, certificate_id: str | None, thumbprint: str | None) -> RSAPrivateKey | None:
        """The key for a notification's `encryptionCertificateId` / `encryptionCertificateThumbprint`.

        The thumbprint names the exact certificate Graph used, so it wins; the id
        (our own label, set on the subscription) is the fallback.
        """
        if thumbprint:
            key = self._by_thumbprint.get(_normalise_thumbprint(thumbprint))
            if key is not None:
                return key
        if certificate_id:
            return self._by_id.get(certificate_id)
        return None

    def decrypt(self, encrypted: EncryptedContent | Mapping[str, Any]) -> bytes:
        """Find the right key and decrypt; `DecryptionError("unknown_certificate")` if none fits."""
        certificate_id = _field(encrypted, "encryptionCertificateId", "encryption_certificate_id")
        thumbprint = _field(encrypted, "encryptionCertificateThumbprint", "encryption_certificate_thumbprint")
        key = self.find(
            certificate_id if isinstance(certificate_id, str) else None,
            thumbprint if isinstance(thumbprint, str) else None,
        )
        if key is None:
            # Public identifiers, but sender-controlled: truncated, and debug only
            # because the caller logs the rejection itself.
            log.debug(
                "encryption_certificate_unknown",
                certificate_id=str(certificate_id)[:64],
                thumbprint=str(thumbprint)[:64],
            )
            raise DecryptionError("unknown_certificate")
        return decrypt_content(encrypted, key)
