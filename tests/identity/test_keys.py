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

import jwt
import keyring
import pytest
import structlog.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_pem_private_key
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.backends.chainer import ChainerBackend
from keyring.errors import PasswordDeleteError

from agentseat.config import Settings
from agentseat.errors import KeyStoreError
from agentseat.identity.keys import AgentCertificate, KeyStore, generate_certificate

SERVICE = "agentseat-test"
PLAINTEXT_KEY = re.compile(rb"-----BEGIN (RSA )?PRIVATE KEY-----")
UseKeyring = Callable[[KeyringBackend], KeyringBackend]


class MemoryKeyring(KeyringBackend):
    """A trustworthy-looking keyring that keeps entries in a dict the test can inspect."""

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
    """Stands in for keyrings.alt.file.PlaintextKeyring (base64 in a file), not installed here."""


class ModestKeyring(MemoryKeyring):
    priority = 0.5  # type: ignore[assignment]  # below 1: keyring itself does not recommend it


class ChainOfKeyrings(ChainerBackend):
    """keyring's chainer with fixed links instead of discovered ones."""

    priority = 10  # type: ignore[assignment]

    def __init__(self, *links: KeyringBackend) -> None:
        super().__init__()
        self.links = list(links)

    @property  # type: ignore[override]
    def backends(self) -> list[KeyringBackend]:
        return self.links


PlaintextKeyring.__module__ = "keyrings.alt.file"
# Defining a backend registers it for keyring's auto-discovery; keep these out of it.
for _backend in (MemoryKeyring, PlaintextKeyring, ModestKeyring, ChainOfKeyrings):
    KeyringBackend._classes.discard(_backend)  # type: ignore[attr-defined]


@pytest.fixture
def use_keyring() -> Iterator[UseKeyring]:
    previous = keyring.get_keyring()

    def use(backend: KeyringBackend) -> KeyringBackend:
        keyring.set_keyring(backend)
        return backend

    yield use
    keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring(use_keyring: UseKeyring) -> MemoryKeyring:
    return use_keyring(MemoryKeyring())  # type: ignore[return-value]


@pytest.fixture
def no_keyring(use_keyring: UseKeyring) -> None:
    use_keyring(fail.Keyring())  # what headless Linux gives (python-ecosystem §5)


@pytest.fixture
def store(tmp_path: Path, memory_keyring: MemoryKeyring) -> KeyStore:
    return make_store(tmp_path)


@pytest.fixture(scope="module")
def cert_a() -> AgentCertificate:
    return generate_certificate("agentseat-test-a")


@pytest.fixture(scope="module")
def cert_b() -> AgentCertificate:
    return generate_certificate("agentseat-test-b")


def make_store(tmp_path: Path, passphrase: str | None = None) -> KeyStore:
    # Explicit values and no env file, so the developer's own AGENTSEAT_* settings cannot leak in.
    return KeyStore(Settings(_env_file=None, state_dir=tmp_path, keyring_service=SERVICE, key_passphrase=passphrase))


def key_file(store: KeyStore, cert: AgentCertificate) -> Path:
    return store.dir / f"{cert.sha1_thumbprint}.key.pem"


def entry(cert: AgentCertificate) -> tuple[str, str]:
    return (SERVICE, f"key-passphrase:{cert.sha1_thumbprint}")


def same_key(a: object, b: object) -> bool:
    return a.public_key().public_numbers() == b.public_key().public_numbers()  # type: ignore[attr-defined]


def test_thumbprints_match_cryptography_fingerprints(cert_a) -> None:
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
    assert cert.subject == cert.issuer and cert.subject.rfc4514_string() == "CN=agent-cn"
    cert.verify_directly_issued_by(cert)
    assert same_key(made.private_key, cert)
    lifetime = made.not_after - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(days=29, hours=23) < lifetime <= dt.timedelta(days=30)
    assert x509.load_der_x509_certificate(base64.b64decode(made.der_b64)) == cert
    assert x509.load_pem_x509_certificate(made.cert_pem.encode()) == cert
    assert "PRIVATE" not in repr(made)
    with pytest.raises(ValueError):
        generate_certificate("agent", days=0)


@pytest.mark.parametrize("existing_dir_mode", [None, 0o755])
def test_key_file_is_0600_in_a_0700_dir_whatever_the_umask(store, cert_a, existing_dir_mode) -> None:
    if existing_dir_mode is not None:  # a readable dir left by an older tool gets tightened
        store.dir.mkdir(parents=True)
        store.dir.chmod(existing_dir_mode)
    old = os.umask(0)
    try:
        store.add(cert_a)
    finally:
        os.umask(old)
    assert stat.S_IMODE(key_file(store, cert_a).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700


def test_key_file_is_encrypted_and_useless_without_the_passphrase(store, memory_keyring, cert_a) -> None:
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


def test_no_plaintext_key_or_passphrase_on_disk(tmp_path, store, memory_keyring, cert_a, cert_b, monkeypatch) -> None:
    staged: list[bytes] = []
    real_replace = os.replace

    def replace_after_reading(src: str, dst: str) -> None:
        staged.append(Path(src).read_bytes())  # the temp file, before it takes its final name
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", replace_after_reading)
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


def test_failed_write_leaves_nothing_half_stored(store, memory_keyring, cert_a, monkeypatch) -> None:
    real_replace = os.replace

    def disk_full_for_certificates(src: str, dst: str) -> None:
        if str(dst).endswith(".crt.pem"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", disk_full_for_certificates)
    with pytest.raises(KeyStoreError, match="No space left"):
        store.add(cert_a)
    assert list(store.dir.iterdir()) == []
    assert memory_keyring.entries == {}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_readable_key_file_is_refused(store, cert_a, mode) -> None:
    store.add(cert_a)
    path = key_file(store, cert_a)
    path.chmod(mode)
    with pytest.raises(KeyStoreError) as info:
        store.load()
    assert all(part in str(info.value) for part in (str(path), f"{mode:04o}", f"chmod 600 {path}"))


def test_group_writable_keys_dir_is_refused(store, cert_a, cert_b) -> None:
    store.add(cert_a)
    store.dir.chmod(0o770)
    with pytest.raises(KeyStoreError, match=re.escape(f"chmod 700 {store.dir}")):
        store.load()
    with pytest.raises(KeyStoreError, match="0770"):
        store.add(cert_b)
    assert not key_file(store, cert_b).exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_key_file_owned_by_another_user_is_refused(store, cert_a) -> None:
    store.add(cert_a)
    path = key_file(store, cert_a)
    os.chown(path, 65534, -1)
    with pytest.raises(KeyStoreError, match=f"{re.escape(str(path))}.*owned by uid 65534"):
        store.load()


def test_symlinked_key_file_is_refused(tmp_path, store, cert_a) -> None:
    store.add(cert_a)
    path = key_file(store, cert_a)
    path.rename(tmp_path / "elsewhere.pem")
    path.symlink_to(tmp_path / "elsewhere.pem")
    with pytest.raises(KeyStoreError, match=re.escape(str(path))):
        store.load()


@pytest.mark.parametrize(("replacement", "error"), [
    ("another key", "does not belong to the private key"), ("a plaintext key", "not an encrypted PKCS#8 key")])
def test_tampered_key_file_is_refused(tmp_path, no_keyring, cert_a, cert_b, replacement, error) -> None:
    store = make_store(tmp_path, passphrase="one passphrase for both keys")
    store.add(cert_a)
    store.add(cert_b)
    plain = cert_a.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    key_file(store, cert_a).write_bytes(key_file(store, cert_b).read_bytes() if replacement == "another key" else plain)
    with pytest.raises(KeyStoreError, match=error):
        store.load(cert_a.sha1_thumbprint)


def test_thumbprint_that_is_not_hex_is_rejected(store, cert_a) -> None:
    store.add(cert_a)
    with pytest.raises(KeyStoreError, match="not a SHA-1 thumbprint"):
        store.load("../../../etc/passwd")
    colon_lower = ":".join(re.findall("..", cert_a.sha1_thumbprint.lower()))
    assert store.load(colon_lower).sha1_thumbprint == cert_a.sha1_thumbprint


def test_passphrase_comes_from_the_setting_when_keyring_is_the_fail_backend(tmp_path, no_keyring, cert_a) -> None:
    store = make_store(tmp_path, passphrase="correct horse battery staple")
    store.add(cert_a)
    data = key_file(store, cert_a).read_bytes()
    assert same_key(load_pem_private_key(data, password=b"correct horse battery staple"), cert_a.certificate)
    assert same_key(store.load().private_key, cert_a.certificate)
    with pytest.raises(KeyStoreError, match="AGENTSEAT_KEY_PASSPHRASE is not set"):
        make_store(tmp_path).load()  # the setting is the only way back to this key


# The chainer writes to its first link that accepts, so one plaintext link spoils the chain.
@pytest.mark.parametrize("untrusted", [PlaintextKeyring, ModestKeyring,
                                       lambda: ChainOfKeyrings(PlaintextKeyring(), MemoryKeyring())])
def test_untrusted_keyring_never_holds_the_passphrase(tmp_path, use_keyring, cert_a, untrusted) -> None:
    backend = use_keyring(untrusted())
    store = make_store(tmp_path, passphrase="from the environment")
    store.add(cert_a)
    assert all(link.entries == {} for link in getattr(backend, "backends", [backend]))
    assert load_pem_private_key(key_file(store, cert_a).read_bytes(), password=b"from the environment")


def test_keyring_chain_of_secure_links_holds_the_passphrase(tmp_path, use_keyring, cert_a) -> None:
    secure = MemoryKeyring()
    use_keyring(ChainOfKeyrings(secure))
    make_store(tmp_path).add(cert_a)
    assert list(secure.entries) == [entry(cert_a)]


def test_saving_without_keyring_or_passphrase_names_both_fixes(tmp_path, no_keyring, cert_a) -> None:
    store = make_store(tmp_path)
    with pytest.raises(KeyStoreError) as info:
        store.add(cert_a)
    for part in ("AGENTSEAT_KEY_PASSPHRASE", "keyring.backends.fail", "Secret Service"):
        assert part in str(info.value)
    assert not key_file(store, cert_a).exists()


def test_wrong_passphrase_from_keyring_is_a_clear_error(store, memory_keyring, cert_a) -> None:
    store.add(cert_a)
    memory_keyring.entries[entry(cert_a)] = "not the passphrase"
    with pytest.raises(KeyStoreError, match="wrong passphrase") as info:
        store.load()
    assert f"key-passphrase:{cert_a.sha1_thumbprint}" in str(info.value)
    assert "not the passphrase" not in str(info.value)


def test_wrong_passphrase_from_setting_is_a_clear_error(tmp_path, no_keyring, cert_a) -> None:
    make_store(tmp_path, passphrase="the right one").add(cert_a)
    with pytest.raises(KeyStoreError, match="passphrase from AGENTSEAT_KEY_PASSPHRASE: wrong passphrase"):
        make_store(tmp_path, passphrase="the wrong one").load()


def test_a_key_is_decrypted_once_per_process_and_a_wrong_passphrase_still_fails(tmp_path, no_keyring, cert_a) -> None:
    # serve's preflight and its runtime both load the key: the second load reuses the first's
    # derivation (~90 ms of a cold start), but only for the same file and the same passphrase.
    make_store(tmp_path, passphrase="the right one").add(cert_a)
    first = make_store(tmp_path, passphrase="the right one").load().private_key
    assert make_store(tmp_path, passphrase="the right one").load().private_key is first
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        make_store(tmp_path, passphrase="the wrong one").load()


def test_missing_key_points_to_setup(store, cert_a, cert_b) -> None:
    with pytest.raises(KeyStoreError, match="agentseat setup"):
        store.load()
    store.add(cert_a)
    with pytest.raises(KeyStoreError, match="no private key.*agentseat setup"):
        store.load(cert_b.sha1_thumbprint)


def test_rotation_keeps_the_old_key_until_it_is_retired(tmp_path, store, memory_keyring, cert_a, cert_b) -> None:
    old, new = cert_a.sha1_thumbprint, cert_b.sha1_thumbprint
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
    assert not list(store.dir.glob(f"{old}.*"))
    assert entry(cert_a) not in memory_keyring.entries
    with pytest.raises(KeyStoreError):
        store.load(old)


def test_retiring_the_active_certificate_is_refused(store, memory_keyring, cert_a) -> None:
    store.add(cert_a)
    with pytest.raises(KeyStoreError, match="active certificate"):
        store.retire(cert_a.sha1_thumbprint)
    assert key_file(store, cert_a).exists() and entry(cert_a) in memory_keyring.entries
    assert store.load().sha1_thumbprint == cert_a.sha1_thumbprint


def test_adding_the_same_certificate_twice_is_refused(store, memory_keyring, cert_a) -> None:
    store.add(cert_a)
    passphrase = memory_keyring.entries[entry(cert_a)]
    with pytest.raises(KeyStoreError, match="already stored"):
        store.add(cert_a)
    assert memory_keyring.entries[entry(cert_a)] == passphrase
    assert store.load().sha1_thumbprint == cert_a.sha1_thumbprint


def test_pem_credential_signs_assertions_the_certificate_verifies(store, cert_a) -> None:
    store.add(cert_a)
    credential = store.load_pem_credential()
    assert set(credential) == {"private_key", "thumbprint"}
    assert credential["thumbprint"] == cert_a.sha1_thumbprint
    token = jwt.encode({"aud": "entra"}, credential["private_key"], algorithm="RS256")
    assert jwt.decode(token, cert_a.certificate.public_key(), algorithms=["RS256"], audience="entra")


def test_logs_name_thumbprints_but_no_secrets(store, memory_keyring, cert_a, cert_b) -> None:
    with structlog.testing.capture_logs() as logs:
        store.add(cert_a)
        store.add(cert_b)
        credential = store.load_pem_credential()
        store.set_active(cert_b.sha1_thumbprint)
        store.retire(cert_a.sha1_thumbprint)
    events = ["certificate_stored", "certificate_stored", "active_certificate_set", "certificate_retired"]
    assert [event["event"] for event in logs] == events
    dumped = repr(logs)
    assert "PRIVATE KEY" not in dumped and credential["private_key"] not in dumped
    assert all(password not in dumped for password in memory_keyring.entries.values())
