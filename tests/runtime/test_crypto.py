"""Rich-notification crypto: Microsoft's public vector, round trips, tampering, fuzzing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from agentseat.graph.models import EncryptedContent
from agentseat.runtime.crypto import (
    DecryptionError,
    KeyRing,
    decrypt_content,
    encrypt_content,
    sha1_thumbprint,
    sha256_thumbprint_b64url,
)

# Copied from microsoftgraph/msgraph-sdk-dotnet-core (MIT): a DUMMY certificate for tests.
_OAEP_SHA1 = asym.OAEP(mgf=asym.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
VECTOR_PATH = Path(__file__).resolve().parent.parent / "data" / "graph-rich-notification-vector.json"


@pytest.fixture(scope="module")
def vector() -> dict[str, Any]:
    return json.loads(VECTOR_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def vector_keys(vector: dict[str, Any]) -> tuple[RSAPrivateKey, x509.Certificate]:
    key, cert, _ = pkcs12.load_key_and_certificates(
        base64.b64decode(vector["pkcs12_base64"]), vector["pkcs12_password"].encode()
    )
    assert isinstance(key, RSAPrivateKey) and cert is not None
    return key, cert


def _self_signed(key: RSAPrivateKey, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def agent_keys() -> tuple[RSAPrivateKey, x509.Certificate]:
    # RSA-2048: the size the runtime should use (fast enough for the throughput target).
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, _self_signed(key, "agent-old")


@pytest.fixture(scope="module")
def rotated_keys() -> tuple[RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, _self_signed(key, "agent-new")


def _flip_first_byte(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# --- Microsoft's vector --------------------------------------------------------


def test_microsoft_vector_decrypts_to_hello_world(vector: dict[str, Any], vector_keys: Any) -> None:
    key, _ = vector_keys
    plaintext = decrypt_content(vector["encryptedContent"], key)
    message = json.loads(plaintext)
    assert message["body"] == vector["expected"]["body"]
    assert message["body"]["content"] == "Hello World"
    assert message["etag"] == vector["expected"]["etag"]


def test_microsoft_vector_decrypts_from_the_parsed_model(vector: dict[str, Any], vector_keys: Any) -> None:
    key, _ = vector_keys
    model = EncryptedContent.model_validate(vector["encryptedContent"])
    assert json.loads(decrypt_content(model, key))["body"]["content"] == "Hello World"


def test_thumbprint_matches_the_one_graph_sent(vector: dict[str, Any], vector_keys: Any) -> None:
    _, cert = vector_keys
    assert sha1_thumbprint(cert) == vector["encryptedContent"]["encryptionCertificateThumbprint"]
    assert sha1_thumbprint(cert) == "4B95353E086AD37196606ACF834A14532F03E6DB"


def test_sha256_thumbprint_is_unpadded_base64url(vector_keys: Any) -> None:
    _, cert = vector_keys
    value = sha256_thumbprint_b64url(cert)
    assert "=" not in value and "+" not in value and "/" not in value
    assert base64.urlsafe_b64decode(value + "=") == cert.fingerprint(hashes.SHA256())


def test_keyring_finds_the_vector_key_by_thumbprint_in_any_notation(vector: dict[str, Any], vector_keys: Any) -> None:
    key, cert = vector_keys
    ring = KeyRing()
    ring.add(key, certificate=cert)
    content = dict(vector["encryptedContent"])
    # Windows shows thumbprints lowercase with spaces; the ring normalises.
    content["encryptionCertificateThumbprint"] = " ".join(
        sha1_thumbprint(cert).lower()[i : i + 2] for i in range(0, 40, 2)
    )
    assert json.loads(ring.decrypt(content))["body"]["content"] == "Hello World"


# --- round trip with our emulator side -----------------------------------------


def test_encrypted_content_round_trips(agent_keys: Any) -> None:
    key, cert = agent_keys
    plaintext = json.dumps({"body": {"content": "hi ✓"}}).encode()
    content = encrypt_content(plaintext, cert, "cert-1")
    assert set(content) == {
        "data",
        "dataSignature",
        "dataKey",
        "encryptionCertificateId",
        "encryptionCertificateThumbprint",
    }
    assert content["encryptionCertificateId"] == "cert-1"
    assert content["encryptionCertificateThumbprint"] == sha1_thumbprint(cert)
    assert decrypt_content(content, key) == plaintext


def test_each_item_gets_a_fresh_symmetric_key(agent_keys: Any) -> None:
    key, cert = agent_keys
    first, second = (encrypt_content(b"same", cert, "c") for _ in range(2))
    assert first["dataKey"] != second["dataKey"] and first["data"] != second["data"]


def test_block_aligned_plaintext_round_trips(agent_keys: Any) -> None:
    key, cert = agent_keys
    for size in (0, 15, 16, 17, 32):
        plaintext = b"x" * size
        assert decrypt_content(encrypt_content(plaintext, cert, "c"), key) == plaintext


def test_encrypting_for_a_non_rsa_certificate_is_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(ec_key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(ec_key, hashes.SHA256())
    )
    with pytest.raises(ValueError, match="RSA"):
        encrypt_content(b"x", cert, "c")


# --- key rotation ------------------------------------------------------------------


def test_keyring_decrypts_for_old_and_new_certificate_during_rotation(agent_keys: Any, rotated_keys: Any) -> None:
    (old_key, old_cert), (new_key, new_cert) = agent_keys, rotated_keys
    ring = KeyRing()
    ring.add(old_key, certificate=old_cert, certificate_id="old")
    ring.add(new_key, certificate=new_cert, certificate_id="new")
    assert len(ring) == 2
    assert ring.decrypt(encrypt_content(b"old", old_cert, "old")) == b"old"
    assert ring.decrypt(encrypt_content(b"new", new_cert, "new")) == b"new"


def test_keyring_falls_back_to_certificate_id_without_thumbprint(agent_keys: Any) -> None:
    key, cert = agent_keys
    ring = KeyRing()
    ring.add(key, certificate_id="only-id")
    content = encrypt_content(b"payload", cert, "only-id")
    del content["encryptionCertificateThumbprint"]
    assert ring.decrypt(content) == b"payload"


def test_retired_certificate_is_no_longer_accepted(agent_keys: Any, rotated_keys: Any) -> None:
    (old_key, old_cert), (new_key, new_cert) = agent_keys, rotated_keys
    ring = KeyRing()
    ring.add(old_key, certificate=old_cert, certificate_id="old")
    ring.add(new_key, certificate=new_cert, certificate_id="new")
    ring.remove(certificate_id="old", thumbprint=sha1_thumbprint(old_cert))
    with pytest.raises(DecryptionError) as caught:
        ring.decrypt(encrypt_content(b"old", old_cert, "old"))
    assert caught.value.reason == "unknown_certificate"
    assert ring.find("new", None) is new_key


def test_keyring_needs_a_name_for_each_key(agent_keys: Any) -> None:
    with pytest.raises(ValueError):
        KeyRing().add(agent_keys[0])


# --- tampering ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def sealed(agent_keys: Any) -> dict[str, str]:
    _, cert = agent_keys
    return encrypt_content(b'{"body":{"content":"secret"}}', cert, "c")


def _reason(content: dict[str, Any], key: RSAPrivateKey) -> str:
    with pytest.raises(DecryptionError) as caught:
        decrypt_content(content, key)
    assert "secret" not in str(caught.value)
    return caught.value.reason


def test_tampered_ciphertext_is_rejected_by_signature(sealed: dict[str, str], agent_keys: Any) -> None:
    assert _reason({**sealed, "data": _flip_first_byte(sealed["data"])}, agent_keys[0]) == "bad_signature"


def test_tampered_signature_is_rejected(sealed: dict[str, str], agent_keys: Any) -> None:
    bad = {**sealed, "dataSignature": _flip_first_byte(sealed["dataSignature"])}
    assert _reason(bad, agent_keys[0]) == "bad_signature"


def test_tampered_data_key_is_rejected(sealed: dict[str, str], agent_keys: Any) -> None:
    assert _reason({**sealed, "dataKey": _flip_first_byte(sealed["dataKey"])}, agent_keys[0]) == "bad_key"


def test_content_for_another_key_is_rejected(sealed: dict[str, str], rotated_keys: Any) -> None:
    assert _reason(sealed, rotated_keys[0]) == "bad_key"


def test_missing_signature_is_rejected_without_decrypting(sealed: dict[str, str], agent_keys: Any) -> None:
    unsigned = {k: v for k, v in sealed.items() if k != "dataSignature"}
    assert _reason(unsigned, agent_keys[0]) == "missing_field"


def test_non_base64_field_is_rejected(sealed: dict[str, str], agent_keys: Any) -> None:
    assert _reason({**sealed, "data": "not base64!"}, agent_keys[0]) == "bad_base64"
    assert _reason({**sealed, "dataKey": "ünïcode"}, agent_keys[0]) == "bad_base64"


def test_truncated_ciphertext_is_rejected_before_rsa(sealed: dict[str, str], agent_keys: Any) -> None:
    short = base64.b64encode(base64.b64decode(sealed["data"])[:-1]).decode()
    assert _reason({**sealed, "data": short}, agent_keys[0]) == "bad_length"


def test_bad_padding_under_a_valid_signature_is_rejected(agent_keys: Any) -> None:
    # A sender that signs a ciphertext whose padding is wrong: the HMAC passes, unpadding must not.
    key, cert = agent_keys
    sym = os.urandom(32)
    encryptor = Cipher(algorithms.AES(sym), modes.CBC(sym[:16])).encryptor()
    ciphertext = encryptor.update(b"A" * 15 + b"\x00") + encryptor.finalize()
    content = {
        "data": base64.b64encode(ciphertext).decode(),
        "dataSignature": base64.b64encode(hmac.new(sym, ciphertext, hashlib.sha256).digest()).decode(),
        "dataKey": base64.b64encode(cert.public_key().encrypt(sym, _OAEP_SHA1)).decode(),
    }
    assert _reason(content, key) == "bad_padding"


def test_wrapped_key_of_wrong_length_is_rejected(agent_keys: Any) -> None:
    key, cert = agent_keys
    content = encrypt_content(b"x", cert, "c")
    content["dataKey"] = base64.b64encode(cert.public_key().encrypt(b"k" * 16, _OAEP_SHA1)).decode()
    assert _reason(content, key) == "bad_key"


# --- fuzzing -----------------------------------------------------------------------

_junk = st.one_of(
    st.none(),
    st.text(max_size=64),
    st.binary(max_size=64),
    st.integers(),
    st.lists(st.integers(), max_size=3),
    st.binary(min_size=1, max_size=600).map(lambda b: base64.b64encode(b).decode()),
    # Exactly one RSA-2048 block, so the private-key operation itself is fuzzed too.
    st.binary(min_size=256, max_size=256).map(lambda b: base64.b64encode(b).decode()),
)
_FIELDS = ("data", "dataSignature", "dataKey", "encryptionCertificateId", "encryptionCertificateThumbprint")


@settings(max_examples=300, deadline=None)
@given(replacements=st.dictionaries(st.sampled_from(_FIELDS), _junk, min_size=1))
def test_random_field_values_only_ever_raise_decryption_error(
    replacements: dict[str, Any], sealed: dict[str, str], agent_keys: Any
) -> None:
    key, cert = agent_keys
    ring = KeyRing()
    ring.add(key, certificate=cert, certificate_id="c")
    content = {**sealed, **replacements}
    for attempt in (lambda: decrypt_content(content, key), lambda: ring.decrypt(content)):
        try:
            plaintext = attempt()
        except DecryptionError as exc:
            assert exc.reason
        else:
            # Only an untouched ciphertext/signature/key can decrypt.
            assert all(replacements.get(f, sealed[f]) == sealed[f] for f in ("data", "dataSignature", "dataKey"))
            assert plaintext == b'{"body":{"content":"secret"}}'


@settings(max_examples=150, deadline=None)
@given(
    field=st.sampled_from(("data", "dataSignature", "dataKey")),
    position=st.integers(min_value=0),
    bit=st.integers(0, 7),
)
def test_any_single_bit_flip_is_detected(
    field: str, position: int, bit: int, sealed: dict[str, str], agent_keys: Any
) -> None:
    raw = bytearray(base64.b64decode(sealed[field]))
    raw[position % len(raw)] ^= 1 << bit
    with pytest.raises(DecryptionError):
        decrypt_content({**sealed, field: base64.b64encode(bytes(raw)).decode()}, agent_keys[0])
