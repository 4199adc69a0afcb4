"""Tests for agentseat.identity.keys: certificate generation and the encrypted key store."""

from __future__ import annotations

import base64
import datetime as dt
import errno
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import jwt
import keyring
import pytest
import structlog.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import PasswordDeleteError

from agentseat.config import Settings
from agentseat.errors import KeyStoreError
from agentseat.identity.keys import AgentCertificate, KeyStore, generate_certificate

SERVICE = "agentseat-test"
PLAINTEXT_KEY = re.compile(rb"-----BEGIN (RSA )?PRIVATE KEY-----")


class MemoryKeyring(KeyringBackend):
    """A real-looking keyring that keeps entries in a dict the test can inspect."""

    priority = 5  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


class PlaintextKeyring(MemoryKeyring):
    """Stands in for keyrings.alt.file.PlaintextKeyring (base64 in a file), which is not installed."""


PlaintextKeyring.__module__ = "keyrings.alt.file"
# Defining a backend registers it for keyring's auto-discovery; keep these out of it.
KeyringBackend._classes.discard(MemoryKeyring)  # type: ignore[attr-defined]
KeyringBackend._classes.discard(PlaintextKeyring)  # type: ignore[attr-defined]


@pytest.fixture
def use_keyring() -> Iterator[Callable[[KeyringBackend], KeyringBackend]]:
    previous = keyring.get_keyring()

    def use(backend: KeyringBackend) -> KeyringBackend:
        keyring.set_keyring(backend)
        return backend

    yield use
    keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring(use_keyring: Callable[[KeyringBackend], KeyringBackend]) -> MemoryKeyring:
    return use_keyring(MemoryKeyring())  # type: ignore[return-value]


@pytest.fixture(scope="module")
def cert_a() -> AgentCertificate:
    return generate_certificate("agentseat-test-a")


@pytest.fixture(scope="module")
def cert_b() -> AgentCertificate:
    return generate_certificate("agentseat-test-b")


def make_store(tmp_path: Path, passphrase: str | None = None) -> KeyStore:
    # Explicit values so an AGENTSEAT_* variable in the environment cannot leak in.
    settings = Settings(state_dir=tmp_path / "state", keyring_service=SERVICE, key_passphrase=passphrase,
                        cert_thumbprint="")
    return KeyStore(settings)


def key_file(store: KeyStore, cert: AgentCertificate) -> Path:
    return store.dir / f"{cert.sha1_thumbprint}.key.pem"


def cert_file(store: KeyStore, cert: AgentCertificate) -> Path:
    return store.dir / f"{cert.sha1_thumbprint}.crt.pem"


def entry(cert: AgentCertificate) -> tuple[str, str]:
    return (SERVICE, f"key-passphrase:{cert.sha1_thumbprint}")


def same_key(a: object, b: object) -> bool:
    return a.public_key().public_numbers() == b.public_key().public_numbers()  # type: ignore[attr-defined]


# --- certificates ---------------------------------------------------------------


def test_thumbprints_match_cryptography_fingerprints(cert_a: AgentCertificate) -> None:
    cert = cert_a.certificate
    assert cert_a.sha1_thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert re.fullmatch(r"[0-9A-F]{40}", cert_a.sha1_thumbprint)
    # x5t#S256 is base64url without padding: 43 characters (entrabot learned this the hard way).
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cert_a.sha256_thumbprint)
    assert base64.urlsafe_b64decode(cert_a.sha256_thumbprint + "=") == cert.fingerprint(hashes.SHA256())


def test_generated_certificate_is_self_signed_rsa_2048_for_the_name() -> None:
    made = generate_certificate("agent-cn", days=30)
    cert = made.certificate
    assert made.private_key.key_size == 2048
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=agent-cn"
    cert.verify_directly_issued_by(cert)
    assert same_key(made.private_key, cert)
    lifetime = made.not_after - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(days=29, hours=23) < lifetime <= dt.timedelta(days=30)
    assert x509.load_der_x509_certificate(base64.b64decode(made.der_b64)) == cert
    assert x509.load_pem_x509_certificate(made.cert_pem.encode()) == cert
    assert "PRIVATE" not in repr(made)


def test_nonsense_certificate_parameters_are_rejected() -> None:
    with pytest.raises(ValueError):
        generate_certificate(" ")
    with pytest.raises(ValueError):
        generate_certificate("agent", days=0)


# --- storing safely ----------------------------------------------------------------


def test_key_file_is_0600_in_a_0700_dir_whatever_the_umask(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                             cert_a: AgentCertificate) -> None:
    store = make_store(tmp_path)
    old = os.umask(0)
    try:
        store.add(cert_a)
    finally:
        os.umask(old)
    assert stat.S_IMODE(key_file(store, cert_a).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700


def test_key_file_is_encrypted_and_useless_without_the_passphrase(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                                   cert_a: AgentCertificate) -> None:
    store = make_store(tmp_path)
    store.add(cert_a)
    data = key_file(store, cert_a).read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):
        load_pem_private_key(data, password=None)
    with pytest.raises(ValueError):
        load_pem_private_key(data, password=b"a guess")
    passphrase = memory_keyring.entries[entry(cert_a)]
    assert len(passphrase) >= 43  # secrets.token_urlsafe(32)
    assert same_key(load_pem_private_key(data, password=passphrase.encode()), cert_a.certificate)


def test_no_plaintext_key_or_passphrase_is_ever_written(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                        cert_a: AgentCertificate, cert_b: AgentCertificate,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    staged: list[bytes] = []
    real_replace = os.replace

    def replace_after_reading(src: str, dst: str) -> None:
        staged.append(Path(src).read_bytes())  # the temp file, before it takes its final name
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_after_reading)
    store = make_store(tmp_path)
    store.add(cert_a)
    store.add(cert_b)
    store.load()
    store.load_pem_credential(cert_b.sha1_thumbprint)
    store.set_active(cert_b.sha1_thumbprint)
    store.retire(cert_a.sha1_thumbprint)

    on_disk = [path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()]
    assert len(staged) >= 5 and on_disk
    passphrase = memory_keyring.entries[entry(cert_b)].encode()
    for blob in staged + on_disk:
        assert not PLAINTEXT_KEY.search(blob)
        assert passphrase not in blob


def test_failed_write_leaves_nothing_half_stored(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                 cert_a: AgentCertificate, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def disk_full_for_certificates(src: str, dst: str) -> None:
        if str(dst).endswith(".crt.pem"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full_for_certificates)
    store = make_store(tmp_path)
    with pytest.raises(KeyStoreError, match="No space left"):
        store.add(cert_a)
    assert list(store.dir.iterdir()) == []
    assert memory_keyring.entries == {}


# --- refusing unsafe files -------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_readable_key_file_is_refused(tmp_path: Path, memory_keyring: MemoryKeyring,
                                      cert_a: AgentCertificate, mode: int) -> None:
    store = make_store(tmp_path)
    store.add(cert_a)
    path = key_file(store, cert_a)
    path.chmod(mode)
    with pytest.raises(KeyStoreError) as info:
        store.load()
    message = str(info.value)
    assert str(path) in message
    assert f"{mode:04o}" in message
    assert f"chmod 600 {path}" in message


def test_group_writable_keys_dir_is_refused(tmp_path: Path, memory_keyring: MemoryKeyring,
                                            cert_a: AgentCertificate, cert_b: AgentCertificate) -> None:
    store = make_store(tmp_path)
    store.add(cert_a)
    store.dir.chmod(0o770)
    with pytest.raises(KeyStoreError, match=re.escape(f"chmod 700 {store.dir}")):
        store.load()
    with pytest.raises(KeyStoreError, match="0770"):
        store.add(cert_b)
    assert not key_file(store, cert_b).exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_key_file_owned_by_another_user_is_refused(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                   cert_a: AgentCertificate) -> None:
    store = make_store(tmp_path)
    store.add(cert_a)
    path = key_file(store, cert_a)
    os.chown(path, 65534, -1)
    with pytest.raises(KeyStoreError, match="owned by uid 65534") as info:
        store.load()
    assert str(path) in str(info.value)


def test_symlinked_key_file_is_refused(tmp_path: Path, memory_keyring: MemoryKeyring,
                                       cert_a: AgentCertificate) -> None:
    store = make_store(tmp_path)
    store.add(cert_a)
    path = key_file(store, cert_a)
    elsewhere = tmp_path / "elsewhere.pem"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    with pytest.raises(KeyStoreError, match=re.escape(str(path))):
        store.load()


def test_key_file_swapped_for_another_key_is_refused(tmp_path: Path, use_keyring: Callable,
                                                     cert_a: AgentCertificate, cert_b: AgentCertificate) -> None:
    use_keyring(fail.Keyring())
    store = make_store(tmp_path, passphrase="one passphrase for both keys")
    store.add(cert_a)
    store.add(cert_b)
    key_file(store, cert_a).write_bytes(key_file(store, cert_b).read_bytes())
    with pytest.raises(KeyStoreError, match="does not belong to the private key"):
        store.load(cert_a.sha1_thumbprint)


def test_thumbprint_that_is_not_hex_is_rejected(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                cert_a: AgentCertificate) -> None:
    store = make_store(tmp_path)
    store.add(cert_a)
    with pytest.raises(KeyStoreError, match="not a SHA-1 thumbprint"):
        store.load("../../../etc/passwd")
    colon_lower = ":".join(re.findall("..", cert_a.sha1_thumbprint.lower()))
    assert store.load(colon_lower).sha1_thumbprint == cert_a.sha1_thumbprint


# --- where the passphrase comes from ------------------------------------------------


def test_passphrase_comes_from_the_setting_when_keyring_is_the_fail_backend(tmp_path: Path, use_keyring: Callable,
                                                                           cert_a: AgentCertificate) -> None:
    use_keyring(fail.Keyring())
    store = make_store(tmp_path, passphrase="correct horse battery staple")
    store.add(cert_a)
    data = key_file(store, cert_a).read_bytes()
    assert same_key(load_pem_private_key(data, password=b"correct horse battery staple"), cert_a.certificate)
    assert same_key(store.load().private_key, cert_a.certificate)


def test_plaintext_keyring_is_not_trusted_with_the_passphrase(tmp_path: Path, use_keyring: Callable,
                                                              cert_a: AgentCertificate) -> None:
    plaintext = use_keyring(PlaintextKeyring())
    store = make_store(tmp_path, passphrase="from the environment")
    store.add(cert_a)
    assert plaintext.entries == {}
    assert load_pem_private_key(key_file(store, cert_a).read_bytes(), password=b"from the environment")


def test_saving_without_keyring_or_passphrase_names_both_fixes(tmp_path: Path, use_keyring: Callable,
                                                               cert_a: AgentCertificate) -> None:
    use_keyring(fail.Keyring())
    store = make_store(tmp_path)
    with pytest.raises(KeyStoreError) as info:
        store.add(cert_a)
    message = str(info.value)
    assert "AGENTSEAT_KEY_PASSPHRASE" in message
    assert "keyring.backends.fail" in message and "Secret Service" in message
    assert not key_file(store, cert_a).exists()


def test_key_saved_with_the_setting_needs_it_to_load(tmp_path: Path, use_keyring: Callable,
                                                     cert_a: AgentCertificate) -> None:
    use_keyring(fail.Keyring())
    make_store(tmp_path, passphrase="saved with this").add(cert_a)
    with pytest.raises(KeyStoreError, match="AGENTSEAT_KEY_PASSPHRASE is not set"):
        make_store(tmp_path).load()


def test_wrong_passphrase_from_keyring_is_a_clear_error(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                        cert_a: AgentCertificate) -> None:
    store = make_store(tmp_path)
    store.add(cert_a)
    memory_keyring.entries[entry(cert_a)] = "not the passphrase"
    with pytest.raises(KeyStoreError, match="wrong passphrase") as info:
        store.load()
    assert f"key-passphrase:{cert_a.sha1_thumbprint}" in str(info.value)
    assert "not the passphrase" not in str(info.value)


def test_wrong_passphrase_from_setting_is_a_clear_error(tmp_path: Path, use_keyring: Callable,
                                                        cert_a: AgentCertificate) -> None:
    use_keyring(fail.Keyring())
    make_store(tmp_path, passphrase="the right one").add(cert_a)
    with pytest.raises(KeyStoreError, match="passphrase from AGENTSEAT_KEY_PASSPHRASE: wrong passphrase"):
        make_store(tmp_path, passphrase="the wrong one").load()


def test_missing_key_points_to_setup(tmp_path: Path, memory_keyring: MemoryKeyring,
                                     cert_a: AgentCertificate, cert_b: AgentCertificate) -> None:
    store = make_store(tmp_path)
    with pytest.raises(KeyStoreError, match="agentseat setup"):
        store.load()
    store.add(cert_a)
    with pytest.raises(KeyStoreError, match="no private key") as info:
        store.load(cert_b.sha1_thumbprint)
    assert "agentseat setup" in str(info.value)


# --- rotation ---------------------------------------------------------------------------


def test_rotation_keeps_the_old_key_until_it_is_retired(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                        cert_a: AgentCertificate, cert_b: AgentCertificate) -> None:
    old, new = cert_a.sha1_thumbprint, cert_b.sha1_thumbprint
    store = make_store(tmp_path)
    assert store.add(cert_a).active
    assert not store.add(cert_b).active
    assert store.active() == old
    assert same_key(store.load(old).private_key, cert_a.certificate)
    assert same_key(store.load(new).private_key, cert_b.certificate)
    assert {item.sha1: item.active for item in store.list()} == {old: True, new: False}

    store.set_active(new)
    assert (store.dir / "active").read_text().strip() == new
    assert make_store(tmp_path).active() == new  # persisted, not just remembered
    assert store.load().sha1_thumbprint == new

    store.retire(old)
    assert [(item.sha1, item.active) for item in store.list()] == [(new, True)]
    assert not key_file(store, cert_a).exists() and not cert_file(store, cert_a).exists()
    assert entry(cert_a) not in memory_keyring.entries
    with pytest.raises(KeyStoreError):
        store.load(old)


def test_retiring_the_active_certificate_is_refused(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                    cert_a: AgentCertificate) -> None:
    store = make_store(tmp_path)
    store.add(cert_a)
    with pytest.raises(KeyStoreError, match="active certificate"):
        store.retire(cert_a.sha1_thumbprint)
    assert key_file(store, cert_a).exists() and entry(cert_a) in memory_keyring.entries
    assert store.load().sha1_thumbprint == cert_a.sha1_thumbprint


def test_adding_the_same_certificate_twice_is_refused(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                      cert_a: AgentCertificate) -> None:
    store = make_store(tmp_path)
    store.add(cert_a)
    passphrase = memory_keyring.entries[entry(cert_a)]
    with pytest.raises(KeyStoreError, match="already stored"):
        store.add(cert_a)
    assert memory_keyring.entries[entry(cert_a)] == passphrase
    assert store.load().sha1_thumbprint == cert_a.sha1_thumbprint


# --- what callers get -----------------------------------------------------------------


def test_pem_credential_signs_assertions_the_certificate_verifies(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                                  cert_a: AgentCertificate) -> None:
    store = make_store(tmp_path)
    store.add(cert_a)
    credential = store.load_pem_credential()
    assert set(credential) == {"private_key", "thumbprint"}
    assert credential["thumbprint"] == cert_a.sha1_thumbprint
    token = jwt.encode({"aud": "entra"}, credential["private_key"], algorithm="RS256")
    assert jwt.decode(token, cert_a.certificate.public_key(), algorithms=["RS256"], audience="entra")


def test_logs_name_thumbprints_but_no_secrets(tmp_path: Path, memory_keyring: MemoryKeyring,
                                              cert_a: AgentCertificate, cert_b: AgentCertificate) -> None:
    store = make_store(tmp_path)
    with structlog.testing.capture_logs() as logs:
        store.add(cert_a)
        store.add(cert_b)
        credential = store.load_pem_credential()
        store.set_active(cert_b.sha1_thumbprint)
        store.retire(cert_a.sha1_thumbprint)
    assert [event["event"] for event in logs] == [
        "certificate_stored", "certificate_stored", "active_certificate_set", "certificate_retired",
    ]
    dumped = repr(logs)
    assert "PRIVATE KEY" not in dumped and credential["private_key"] not in dumped
    assert all(password not in dumped for password in memory_keyring.entries.values())


async def test_async_callers_run_the_store_in_a_worker_thread(tmp_path: Path, memory_keyring: MemoryKeyring,
                                                              cert_a: AgentCertificate) -> None:
    store = make_store(tmp_path)
    await anyio.to_thread.run_sync(store.add, cert_a)
    loaded = await anyio.to_thread.run_sync(store.load)
    assert loaded.sha1_thumbprint == cert_a.sha1_thumbprint
