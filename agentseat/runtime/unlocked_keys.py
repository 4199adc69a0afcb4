"""The agent's stored certificates with their private keys, unlocked once per process.

Unlocking the encrypted PKCS#8 file costs ~90 ms of key derivation and startup needs a key
three times (msal's credential, the decryption key ring, the active certificate), so each is
decrypted once and kept in memory; the unencrypted key never touches disk.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ..identity.keys import AgentCertificate, KeyStore
from .crypto import KeyRing


class UnlockedKeys:
    """Certificates by SHA-1 thumbprint (upper case), loaded from `keys` on first use."""

    def __init__(self, keys: KeyStore, thumbprint: str | None = None) -> None:
        self._keys, self._thumbprint = keys, thumbprint
        self._certificates: dict[str, AgentCertificate] = {}

    def certificate(self, sha1: str | None = None) -> AgentCertificate:
        """The certificate `sha1`, else the configured one, else the store's active one."""
        key = (sha1 or self._thumbprint or self._keys.active() or "").upper()
        if key not in self._certificates:
            cert = self._keys.load(key or None)
            self._certificates[cert.sha1_thumbprint.upper()] = self._certificates[key] = cert
        return self._certificates[key]

    def msal_credential(self) -> dict[str, Any]:
        """msal's certificate credential; the unencrypted PEM exists only in memory."""
        cert = self.certificate()
        pem = cert.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode("ascii")
        return {"private_key": pem, "thumbprint": cert.sha1_thumbprint}

    def key_ring(self) -> tuple[KeyRing, AgentCertificate]:
        """Every stored key can decrypt: Graph may still use the old certificate for a
        while after a rotation (change-notifications-with-resource-data, key rotation)."""
        ring = KeyRing()
        for stored in self._keys.list():
            cert = self.certificate(stored.sha1)
            ring.add(cert.private_key, certificate=cert.certificate, certificate_id=cert.sha1_thumbprint)
        return ring, self.certificate()
