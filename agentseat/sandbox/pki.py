"""The sandbox's own PKI: a CA, a loopback server certificate, and token-signing keys.

Created on first start and kept in the state dir, so a runtime that trusts the
CA bundle once keeps trusting the sandbox across restarts. The signing keys
stand in for Entra's: they sign access tokens and the `validationTokens` of
rich notifications, and are published as a JWKS. Rotation adds a key and makes
it the signer while older keys stay published, as Entra does
("keys are rotated daily", change-notifications-with-resource-data).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from .tenant import Tenant

CA_FILE = "ca.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
SIGNING_FILE = "signing-keys.json"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _write_private(path: Path, data: bytes) -> None:
    # The sandbox's keys are test keys, but they still never sit world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass
class SigningKey:
    kid: str
    key: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}


class SandboxPki:
    """Loads or creates the CA, server certificate and signing keys in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._ensure_tls()
        self.signing_keys: list[SigningKey] = self._load_signing_keys()
        self._public_keys = {k.kid: k.key.public_key() for k in self.signing_keys}

    # --- TLS -------------------------------------------------------------------
    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def server_cert_path(self) -> Path:
        return self.directory / SERVER_CERT_FILE

    @property
    def server_key_path(self) -> Path:
        return self.directory / SERVER_KEY_FILE

    def _ensure_tls(self) -> None:
        if self.ca_path.exists() and self.server_cert_path.exists() and self.server_key_path.exists():
            return
        now = dt.datetime.now(dt.UTC)
        ca_key = _new_key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentseat sandbox CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        server_key = _new_key()
        server_cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.server_cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
        _write_private(self.server_key_path, _pem(server_key))

    # --- signing keys ------------------------------------------------------------
    def _load_signing_keys(self) -> list[SigningKey]:
        path = self.directory / SIGNING_FILE
        if path.exists():
            data = json.loads(path.read_text())
            return [
                SigningKey(item["kid"], serialization.load_pem_private_key(item["pem"].encode(), None))  # type: ignore[arg-type]
                for item in data
            ]
        keys = [SigningKey(_b64url(secrets.token_bytes(12)), _new_key())]
        self._save_signing_keys(keys)
        return keys

    def _save_signing_keys(self, keys: list[SigningKey]) -> None:
        payload = [{"kid": k.kid, "pem": _pem(k.key).decode()} for k in keys]
        _write_private(self.directory / SIGNING_FILE, json.dumps(payload).encode())

    @property
    def active(self) -> SigningKey:
        return self.signing_keys[-1]

    def rotate(self, *, keep: int = 2) -> SigningKey:
        """Add a new signing key; the newest `keep` stay published in the JWKS."""
        new = SigningKey(_b64url(secrets.token_bytes(12)), _new_key())
        self.signing_keys = [*self.signing_keys, new][-keep:]
        self._public_keys = {k.kid: k.key.public_key() for k in self.signing_keys}
        self._save_signing_keys(self.signing_keys)
        return new

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.signing_keys]}

    def sign(self, claims: dict[str, Any], *, typ: str = "JWT") -> str:
        key = self.active
        return jwt.encode(claims, key.key, algorithm="RS256", headers={"kid": key.kid, "typ": typ, "x5t": key.kid})

    def decode(self, token: str, *, audience: str | list[str] | None, leeway: float = 0, now: float | None = None,
               verify_exp: bool = True) -> dict[str, Any]:
        """Verify a token the sandbox itself issued. Raises `jwt.InvalidTokenError`."""
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise jwt.InvalidAlgorithmError("only RS256 tokens are issued here")
        public = self._public_keys.get(header.get("kid", ""))
        if public is None:
            raise jwt.InvalidSignatureError("token signed by an unknown key")
        claims = jwt.decode(
            token,
            public,
            algorithms=["RS256"],
            audience=audience,
            # Lifetimes are judged on the sandbox clock below, not wall time (which iat would use).
            options={"verify_aud": audience is not None, "verify_exp": False, "verify_nbf": False,
                     "verify_iat": False},
        )
        if verify_exp:
            t = now if now is not None else dt.datetime.now(dt.UTC).timestamp()
            if claims.get("exp", 0) + leeway < t:
                raise jwt.ExpiredSignatureError("token expired")
            if claims.get("nbf", 0) - leeway > t + 300:
                raise jwt.ImmatureSignatureError("token not yet valid")
        return claims


def sha1_thumbprint_hex(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - it is a thumbprint, not a security hash


def x5t(der: bytes) -> str:
    return _b64url(hashlib.sha1(der).digest())  # noqa: S324


def x5t_s256(der: bytes) -> str:
    return _b64url(hashlib.sha256(der).digest())


def ensure_provisioner_credential(tenant: Tenant, directory: Path, app_id: str) -> None:
    """Give the demo provisioner app a certificate whose key `agentseat setup` can use.

    This is the sandbox's own throwaway credential (a stand-in for the admin's
    provisioner app), kept 0600 beside the sandbox CA; the agent's key is never
    stored like this.
    """
    from .tenant import KeyCredential

    cert_path, key_path = directory / "provisioner.crt.pem", directory / "provisioner.key.pem"
    app = tenant.apps[app_id]
    if cert_path.exists() and key_path.exists():
        der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
        if any(kc.sha1 == sha1_thumbprint_hex(der) for kc in app.key_credentials):
            return
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentseat sandbox provisioner")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _pem(key))
    app.key_credentials = [KeyCredential(
        key_id=str(uuid.uuid4()), sha1=sha1_thumbprint_hex(der), cert_der_b64=base64.b64encode(der).decode(),
        start=now.timestamp() - 86400, end=now.timestamp() + 365 * 86400, display_name="sandbox provisioner",
    )]
