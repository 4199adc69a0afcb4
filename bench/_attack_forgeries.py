"""Attack kinds that forge or tamper with notifications, tokens and encryption.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import jwt
from cryptography.hazmat.primitives import hashes, serialization

from ._attack_target import hs256_token, MISSING, Outcome, post, Target, unsigned_token, b64url, first_cases

async def client_state(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    real = t.client_state
    variants = [("wrong", "not-the-client-state"), ("missing", None), ("empty", ""), ("case_changed", real.swapcase()),
                ("truncated", real[:-1]), ("extended", real + "x"), ("padded", f" {real} "), ("huge", "x" * 100_000),
                ("number", 12345), ("object", {"clientState": real})]
    out = []
    for name, value in first_cases(variants, quick):
        out.append(await post(s, t, name, t.body([t.item(client_state=value)])))
    return out


async def unknown_subscription(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    ids = [("random_guid", str(uuid.uuid4())), ("path", "../../subscriptions"), ("huge", "a" * 200_000),
           ("empty", ""), ("teams_id_uppercased", t.teams_sub.upper()), ("nul", "\u0000" + t.teams_sub)]
    return [await post(s, t, name, t.body([t.item(subscription=sid)])) for name, sid in first_cases(ids, quick)]


async def wrong_tenant(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    tenants = [("other", str(uuid.uuid4())), ("empty", ""), ("common", "common")]
    out = []
    for name, tenant in first_cases(tenants, quick):
        out.append(await post(s, t, name, t.body([t.item(tenant=tenant)], [t.token(tid=tenant if tenant else MISSING)])))
    return out


async def replay_same(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """One genuine notification sent twice in a row and five times at once: one event."""
    body, key = t.valid()
    out = [await post(s, t, "first", body), await post(s, t, "again", body)]
    if not quick:
        async with anyio.create_task_group() as tg:
            async def one(n: int) -> None:
                out.append(await post(s, t, f"concurrent_{n}", body))
            for n in range(5):
                tg.start_soon(one, n)
    out[0].note = key
    return out


async def replay_old(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A genuine notification stored earlier, replayed later: no second event.

    Then the same items under the token they came with, now expired: dropped.
    """
    message = t.message()
    item = t.item(message=message)
    body = t.body([item])
    out = [await post(s, t, "original", body)]
    out[0].note = t.key_of(message)
    await anyio.sleep(0.5 if quick else 2.0)
    out.append(await post(s, t, "replayed_later", body))
    if not quick:
        expired = t.token(iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200, exp=int(time.time()) - 3600)
        out.append(await post(s, t, "replayed_with_expired_token", t.body([item], [expired])))
    return out


async def token_other_key(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    tokens = [("entra_kid_attacker_key", t.token(key=t.evil_key, kid=t.kid)),
              ("signature_of_other_token", _swap_signature(t.token(), t.token(key=t.evil_key, kid=t.kid))),
              ("payload_swapped", _swap_payload(t.token(), t.claims(aud=str(uuid.uuid4()))))]
    return [await post(s, t, n, t.body([t.item()], [tok])) for n, tok in first_cases(tokens, quick)]


def _swap_signature(good: str, other: str) -> str:
    return ".".join(good.split(".")[:2] + [other.split(".")[2]])


def _swap_payload(good: str, claims: dict[str, Any]) -> str:
    head, _, sig = good.split(".")
    return f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"


async def token_unknown_kid(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A key id the JWKS lacks: the item's content is not trusted and the message it names is
    read from Graph instead (a token fallback, issue 11); a lifecycle POST is answered 500 so
    that Graph retries after a key rotation. Nothing forged is stored."""
    tokens = [("attacker_kid", t.token(key=t.evil_key, kid="attacker-kid")),
              ("empty_kid", t.token(key=t.evil_key, kid=""))]
    out = []
    for name, tok in first_cases(tokens, quick):
        out.append(await post(s, t, name, t.body([t.item()], [tok]), allowed=(202, 500)))
    return out


async def token_alg_none(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    claims = t.claims()
    tokens = [("none", unsigned_token(claims, "none", t.kid)), ("None", unsigned_token(claims, "None", t.kid)),
              ("NONE_with_sig", unsigned_token(claims, "NONE", t.kid) + "c2ln"),
              ("rs256_no_signature", t.token().rsplit(".", 1)[0] + ".")]
    return [await post(s, t, n, t.body([t.item()], [tok])) for n, tok in first_cases(tokens, quick)]


async def token_hs256_public_key(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    public = t.signing_key.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public).encode()
    secrets = [("pem", pem), ("der", der), ("jwk_json", jwk), ("empty", b"")]
    return [await post(s, t, n, t.body([t.item()], [hs256_token(t.claims(), key, t.kid)]))
            for n, key in first_cases(secrets, quick)]


async def token_wrong_claims(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Signed with Entra's real key, so only the claims are wrong (a token Entra issued to someone else)."""
    other = str(uuid.uuid4())
    cases = [
        ("aud_other_app", {"aud": other}), ("aud_missing", {"aud": MISSING}), ("aud_list_other", {"aud": [other]}),
        ("iss_other_tenant", {"iss": f"https://login.microsoftonline.com/{other}/v2.0"}),
        ("iss_other_authority", {"iss": f"https://evil.example/{t.tenant_id}/v2.0"}),
        ("iss_missing", {"iss": MISSING}), ("tid_other", {"tid": other}),
        ("azp_other", {"azp": other}), ("azp_missing", {"azp": MISSING}),
        ("v1_without_appid", {"ver": "1.0", "iss": f"https://sts.windows.net/{t.tenant_id}/"}),
        ("v1_other_appid", {"ver": "1.0", "iss": f"https://sts.windows.net/{t.tenant_id}/", "appid": other}),
        ("ver_missing", {"ver": MISSING}), ("ver_3", {"ver": "3.0"}),
    ]
    return [await post(s, t, n, t.body([t.item()], [t.token(**c)])) for n, c in first_cases(cases, quick)]


async def token_expired(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    now = int(time.time())
    cases = [("expired", {"exp": now - 1}), ("expired_long_ago", {"exp": now - 86_400 * 30}),
             ("not_yet_valid", {"nbf": now + 86_400}), ("exp_missing", {"exp": MISSING}),
             ("exp_string", {"exp": str(now + 3600)}), ("exp_bool", {"exp": True}), ("exp_null", {"exp": None}),
             ("nbf_string", {"nbf": "0"})]
    return [await post(s, t, n, t.body([t.item()], [t.token(**c)])) for n, c in first_cases(cases, quick)]


async def token_missing(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Rich items without usable validationTokens."""
    cases: list[tuple[str, Any]] = [
        ("absent", None), ("null", [None]), ("empty_list", []), ("empty_string", [""]), ("string_not_list", "tok"),
        ("garbage", ["not.a.jwt"]), ("number", [123]), ("huge", ["eyJ" + "A" * 40_000]),
        ("too_many", [t.token()] * 17), ("three_dots", ["a.b.c.d"]),
    ]
    out = []
    for name, tokens in first_cases(cases, quick):
        if name == "null":
            body = json.dumps({"value": [t.item()], "validationTokens": None}).encode()
        else:
            body = t.body([t.item()], tokens)
        out.append(await post(s, t, name, body))
    return out


async def token_mixed(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    cases = [("good_then_forged", [t.token(), t.token(key=t.evil_key, kid=t.kid)]),
             ("forged_then_good", [unsigned_token(t.claims()), t.token()]),
             ("good_then_expired", [t.token(), t.token(exp=int(time.time()) - 10)])]
    return [await post(s, t, n, t.body([t.item()], toks)) for n, toks in first_cases(cases, quick)]


def _enc(t: Target) -> dict[str, str]:
    return t.encrypt(t.message())


async def encrypted_truncated(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    def cut(field: str, how: Callable[[str], str]) -> dict[str, str]:
        enc = _enc(t)
        enc[field] = how(enc[field])
        return enc

    def drop_block(value: str) -> str:
        return base64.b64encode(base64.b64decode(value)[:-16]).decode()

    cases = [("data_half", cut("data", lambda v: v[: len(v) // 2])),
             ("data_last_block_removed", cut("data", drop_block)),
             ("data_one_byte", cut("data", lambda v: base64.b64encode(base64.b64decode(v)[:1]).decode())),
             ("data_empty", cut("data", lambda v: "")),
             ("datakey_half", cut("dataKey", lambda v: v[: len(v) // 2])),
             ("datakey_empty", cut("dataKey", lambda v: ""))]
    return [await post(s, t, n, t.body([t.item(encrypted=e)])) for n, e in first_cases(cases, quick)]


async def encrypted_bad_hmac(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    def with_sig(value: Any) -> dict[str, Any]:
        enc: dict[str, Any] = _enc(t)
        if value is MISSING:
            enc.pop("dataSignature")
        else:
            enc["dataSignature"] = value(enc) if callable(value) else value
        return enc

    def flipped(enc: dict[str, str]) -> str:
        raw = bytearray(base64.b64decode(enc["dataSignature"]))
        raw[0] ^= 1
        return base64.b64encode(bytes(raw)).decode()

    def data_flipped(enc: dict[str, Any]) -> str:
        raw = bytearray(base64.b64decode(enc["data"]))
        raw[-1] ^= 1
        enc["data"] = base64.b64encode(bytes(raw)).decode()
        return enc["dataSignature"]

    cases = [("signature_bit_flipped", with_sig(flipped)), ("signature_missing", with_sig(MISSING)),
             ("signature_empty", with_sig("")), ("signature_short", with_sig(base64.b64encode(b"x" * 8).decode())),
             ("data_bit_flipped", with_sig(data_flipped)), ("signature_null", with_sig(None))]
    return [await post(s, t, n, t.body([t.item(encrypted=e)])) for n, e in first_cases(cases, quick)]


async def encrypted_swapped_key(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    a, b = _enc(t), _enc(t)
    swapped = {**a, "dataKey": b["dataKey"]}
    both = {**a, "dataKey": b["dataKey"], "dataSignature": b["dataSignature"]}
    data_only = {**a, "data": b["data"]}
    cases = [("datakey_of_another", swapped), ("datakey_and_signature_of_another", both),
             ("data_of_another", data_only)]
    return [await post(s, t, n, t.body([t.item(encrypted=e)])) for n, e in first_cases(cases, quick)]


async def encrypted_other_cert(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Content for another key, or naming no key of ours. (Content that names our certificate by
    thumbprint or id and is encrypted for it is genuine: anyone can encrypt for a public key.)"""
    def unknown_ids(enc: dict[str, str]) -> dict[str, str]:
        return {**enc, "encryptionCertificateId": "not-our-certificate", "encryptionCertificateThumbprint": "00" * 20}

    def no_ids(enc: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in enc.items() if not k.startswith("encryptionCertificate")}

    cases = [
        ("encrypted_to_attacker_cert_with_our_id",
         lambda m: t.encrypt(m, certificate=t.evil_certificate, certificate_id=t.certificate_id)),
        ("encrypted_to_attacker_cert_our_thumbprint", lambda m: {**t.encrypt(m, certificate=t.evil_certificate),
                                                                "encryptionCertificateThumbprint": _thumb(t)}),
        ("unknown_certificate_id_and_thumbprint", lambda m: unknown_ids(t.encrypt(m))),
        ("no_certificate_ids", lambda m: no_ids(t.encrypt(m))),
    ]
    out = []
    for name, make in first_cases(cases, quick):
        message = t.message()  # a message of its own per case: a dedupe must not hide an acceptance
        out.append(await post(s, t, name, t.body([t.item(message=message, encrypted=make(message))])))
    return out


def _thumb(t: Target) -> str:
    return t.certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Graph's thumbprint is SHA-1


async def encrypted_bad_base64(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    def bad(field: str, value: Any) -> dict[str, Any]:
        return {**_enc(t), field: value}

    cases = [("data_not_base64", bad("data", "!!!not base64!!!")), ("datakey_unicode", bad("dataKey", "ключ€")),
             ("signature_whitespace", bad("dataSignature", " \t\n ")), ("data_number", bad("data", 12345)),
             ("data_url_safe_alphabet", bad("data", _enc(t)["data"].replace("+", "-").replace("/", "_")))]
    return [await post(s, t, n, t.body([t.item(encrypted=e)])) for n, e in first_cases(cases, quick)]


async def decrypts_to_junk(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Genuine crypto, token and clientState; the plaintext is not a usable chatMessage."""
    def enc(payload: Any) -> dict[str, str]:
        return t.encrypt(payload if isinstance(payload, bytes) else json.dumps(payload).encode())

    marker = f"atk-pt-{uuid.uuid4().hex}"
    t.markers.append(marker)
    cases: list[tuple[str, Any]] = [
        ("not_json", enc(marker.encode())), ("json_list", enc([marker])), ("json_string", enc(marker)),
        ("not_utf8", enc(b"\xff\xfe" + marker.encode())), ("empty", enc(b"")),
        ("from_missing", enc(t.message(**{"from": None}))), ("from_string", enc(t.message(**{"from": marker}))),
        ("sender_is_the_agent", enc(t.message(**{"from": {"user": {"id": t.agent_user_id}}}))),
        ("system_message", enc(t.message(messageType="systemEventMessage"))),
        ("deleted", enc(t.message(deletedDateTime="2026-02-02T17:56:05Z"))),
        ("created_not_a_date", enc(t.message(createdDateTime=marker))),
        ("id_number", enc(t.message(id=12345678))), ("body_list", enc(t.message(body=[marker]))),
        ("chat_id_object", enc(t.message(chatId={"x": marker}))),
        ("sender_id_object", enc(t.message(**{"from": {"user": {"id": {"x": 1}}}}))),
    ]
    return [await post(s, t, n, t.body([t.item(encrypted=e)])) for n, e in first_cases(cases, quick)]


async def change_type_odd(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Genuine but not a new message, or both a change and a lifecycle event."""
    cases: list[tuple[str, dict[str, Any]]] = [
        ("updated", t.item(change_type="updated")), ("deleted", t.item(change_type="deleted")),
        ("unknown_future_value", t.item(change_type="unknownFutureValue")),
        ("both_change_and_lifecycle", {**t.item(), "lifecycleEvent": "missed"}),
        ("neither", {k: v for k, v in t.item().items() if k != "changeType"}),
        ("resource_missing", {k: v for k, v in t.item(encrypted=None).items() if k not in ("resource", "resourceData")}),
    ]
    return [await post(s, t, n, t.body([item])) for n, item in first_cases(cases, quick)]


async def _churn(t: Target) -> tuple[dict[str, int], set[str]]:
    await anyio.sleep(0)
    requests = t.graph_requests()
    keys = ("POST /subscriptions", "PATCH /subscriptions/{sub_id}", "DELETE /subscriptions/{sub_id}",
            "POST /subscriptions/{sub_id}/reauthorize", "GET /me/mailFolders/inbox/messages/delta", "GET /me/chats")
    return {k: requests.get(k, 0) for k in keys}, t.subscription_ids()


async def lifecycle_wrong_client_state(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Forged lifecycle events must not make the runtime touch its subscriptions or resync."""
    before = await _churn(t)
    out = []
    events = ["subscriptionRemoved", "missed", "reauthorizationRequired"]
    for event in first_cases(events, quick):
        for name, cs in (("wrong", "not-the-client-state"), ("missing", None)):
            item = t.item(lifecycle=event, subscription=t.mail_sub if event == "missed" else t.teams_sub,
                          client_state=cs)
            if cs is None:
                item.pop("clientState", None)
            out.append(await post(s, t, f"{event}_{name}", json.dumps({"value": [item]}).encode(), path="/lifecycle"))
    await anyio.sleep(1.5)  # the manager reacts within milliseconds; give it time to misbehave
    after = await _churn(t)
    if after != before:
        out[0].problem = f"leak: forged lifecycle event acted on ({before[0]} -> {after[0]})"
    return out


async def lifecycle_forged_token(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """The right clientState, but the tokens sent with it fail: the event is suspicious, ignored."""
    before = await _churn(t)
    out = []
    for event in first_cases(["subscriptionRemoved", "reauthorizationRequired", "missed"], quick):
        sub, cs = (t.mail_sub, t.mail_client_state) if event == "missed" else (t.teams_sub, t.client_state)
        body = t.body([t.item(lifecycle=event, subscription=sub, client_state=cs)],
                      [t.token(key=t.evil_key, kid=t.kid)])
        out.append(await post(s, t, event, body, path="/lifecycle"))
    await anyio.sleep(1.5)
    after = await _churn(t)
    if after != before:
        out[0].problem = f"leak: lifecycle event with a forged token acted on ({before[0]} -> {after[0]})"
    return out


async def change_on_lifecycle_url(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    body, _ = t.valid()
    return [await post(s, t, "genuine_change_on_lifecycle_url", body, path="/lifecycle")]
