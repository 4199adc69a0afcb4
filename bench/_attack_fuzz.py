"""Hypothesis-generated notification bodies around Graph's changeNotificationCollection schema.

`generate(target, n)` runs a `@given` test with `max_examples=n` that only
collects what Hypothesis draws; bench/attack.py POSTs the bodies to the live
webhook. The strategies mix the real values (our subscription ids, the
clientState, the tenant, genuine encrypted content and genuine tokens) with
near misses and junk, at every level: values, item shapes, the collection, the
serialised bytes, the content type and the endpoint. So most bodies get past the
parser and reach the trust checks, decryption and normalisation.

A body can only be accepted if it is genuine in every way that matters; the
few genuine encrypted messages used here have known keys (`genuine_keys`), so
the judge can tell a correct acceptance from a leak.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ._attack_corpus import GENUINE_EXPIRY, MISSING, Target, hs256_token, unsigned_token

LIFECYCLE_EVENTS = ["missed", "subscriptionRemoved", "reauthorizationRequired"]


@dataclass
class Fuzz:
    bodies: list[tuple[str, str | None, bytes]] = field(default_factory=list)  # (path, content type, body)
    genuine_keys: set[str] = field(default_factory=set)


def _json_leaf() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=30))


def _junk_json() -> st.SearchStrategy[Any]:
    return st.recursive(_json_leaf(), lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                        max_leaves=12)


def strategies(t: Target) -> tuple[st.SearchStrategy[tuple[str, str | None, bytes]], set[str]]:
    """The body strategy and the keys of the genuine messages it may carry."""
    genuine_messages = [t.message() for _ in range(6)]
    genuine_keys = {t.key_of(m) for m in genuine_messages}
    genuine_enc = [t.encrypt(m) for m in genuine_messages]
    evil_enc = [t.encrypt(t.message(), certificate=t.evil_certificate, certificate_id=t.certificate_id)]
    b64 = st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
    pieces = {k: [e[k] for e in genuine_enc + evil_enc] for k in ("data", "dataKey", "dataSignature")}
    field_value = {k: st.one_of(st.sampled_from(v), b64, st.text(max_size=40), st.integers()) for k, v in pieces.items()}

    encrypted = st.one_of(
        st.sampled_from(genuine_enc + evil_enc), st.sampled_from(genuine_enc),
        st.builds(lambda base, field, value: {**base, field: value}, st.sampled_from(genuine_enc),
                  st.sampled_from(["data", "dataKey", "dataSignature", "encryptionCertificateId",
                                   "encryptionCertificateThumbprint"]),
                  st.one_of(b64, st.text(max_size=40), st.none(), st.sampled_from(sum(pieces.values(), [])))),
        st.fixed_dictionaries({k: v for k, v in field_value.items()},
                              optional={"encryptionCertificateId": st.sampled_from([t.certificate_id, "x", ""]),
                                        "encryptionCertificateThumbprint": st.text(max_size=40)}),
        _junk_json(),
    )
    now = int(time.time())
    good_token = t.token()
    tokens = st.one_of(
        # Mostly a genuine token, so that bodies get past the token check to decryption and beyond.
        st.just([good_token]), st.just([good_token]), st.just([good_token]),
        st.just(MISSING), st.none(),
        st.lists(st.one_of(
            st.just(good_token),
            # No token under an unknown kid: that one is answered 500 by design (see token_unknown_kid).
            st.sampled_from([t.token(key=t.evil_key, kid=t.kid),
                             unsigned_token(t.claims(), "none", t.kid), hs256_token(t.claims(), b"k", t.kid),
                             t.token(aud=str(uuid.uuid4())), t.token(exp=now - 60), t.token(ver="1.0"),
                             t.token(iss="https://evil.example/"), t.token(azp=str(uuid.uuid4()))]),
            st.text(max_size=60), st.integers(), st.none()), max_size=4),
        st.text(max_size=20),
    )
    ids = st.one_of(st.sampled_from([t.teams_sub, t.mail_sub]), st.uuids().map(str), st.text(max_size=40))
    resource = st.one_of(st.sampled_from([f"chats('{t.chat_id}')/messages('1')", f"chats/{t.chat_id}/messages/2",
                                          f"Users/{t.agent_user_id}/Messages/AAMkA", "../../x"]),
                         st.text(max_size=60))
    item = st.fixed_dictionaries(
        {},
        optional={
            "subscriptionId": ids,
            "subscriptionExpirationDateTime": st.one_of(st.just(GENUINE_EXPIRY), st.datetimes().map(
                lambda d: d.isoformat() + "Z"), st.text(max_size=30), st.integers()),
            "tenantId": st.one_of(st.just(t.tenant_id), st.uuids().map(str), st.text(max_size=20)),
            "clientState": st.one_of(st.just(t.client_state), st.text(max_size=60), st.none(), st.integers()),
            "changeType": st.one_of(st.sampled_from(["created", "updated", "deleted", "unknownFutureValue"]),
                                    st.text(max_size=12), st.none()),
            "lifecycleEvent": st.one_of(st.sampled_from(LIFECYCLE_EVENTS), st.text(max_size=24)),
            "resource": resource,
            "resourceData": st.one_of(st.fixed_dictionaries({"id": st.one_of(st.text(max_size=30), st.integers()),
                                                             "@odata.type": st.text(max_size=30)}), _junk_json()),
            "encryptedContent": encrypted,
            "id": st.text(max_size=20),
            "extra": _junk_json(),
        },
    )
    # Mostly well-formed items with the real ids, so bodies reach the deeper checks.
    likely_item = st.builds(
        lambda cs, ct, enc, sub, drop: {k: v for k, v in {
            "subscriptionId": sub, "subscriptionExpirationDateTime": GENUINE_EXPIRY, "tenantId": t.tenant_id,
            "clientState": cs, "changeType": ct, "resource": f"chats('{t.chat_id}')/messages('1')",
            "resourceData": {"id": "1"}, "encryptedContent": enc}.items() if k != drop},
        st.one_of(st.just(t.client_state), st.text(max_size=8)),
        st.sampled_from(["created", "updated", "deleted"]), encrypted,
        st.sampled_from([t.teams_sub, t.mail_sub]),
        st.sampled_from(["", "clientState", "encryptedContent", "resource", "changeType", "tenantId"]),
    )
    collection = st.builds(
        lambda items, toks, extra: {"value": items, **({} if toks is MISSING else {"validationTokens": toks}),
                                    **extra},
        st.lists(st.one_of(likely_item, item), max_size=5), tokens,
        st.dictionaries(st.text(max_size=10).filter(lambda k: k not in ("value", "validationTokens")),
                        _junk_json(), max_size=2))
    document = st.one_of(collection, collection, collection, _junk_json())

    def serialise(doc: Any, mutation: str, where: float, byte: int) -> bytes:
        raw = json.dumps(doc).encode()
        at = int(len(raw) * where)
        if mutation == "truncate":
            return raw[:at]
        if mutation == "flip":
            return raw[:at] + bytes([byte]) + raw[at + 1:]
        if mutation == "insert":
            return raw[:at] + bytes([byte]) + raw[at:]
        return raw

    body = st.builds(serialise, document, st.sampled_from(["none"] * 6 + ["truncate", "flip", "insert"]),
                     st.floats(0, 1), st.integers(0, 255))
    path = st.sampled_from(["/notifications"] * 4 + ["/lifecycle"])
    content_type = st.sampled_from(["application/json"] * 8 + ["application/json; charset=utf-8", "text/plain", None])
    return st.tuples(path, content_type, body), genuine_keys


def generate(t: Target, n: int, seed: int = 0) -> Fuzz:
    """Draw `n` bodies with Hypothesis (`@given`, `max_examples=n`), without running anything on them."""
    strategy, keys = strategies(t)
    fuzz = Fuzz(genuine_keys=keys)

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate], derandomize=seed == 0,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example: tuple[str, str | None, bytes]) -> None:
        fuzz.bodies.append(example)

    collect()
    return fuzz
