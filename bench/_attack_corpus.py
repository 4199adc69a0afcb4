"""The attack corpus: forged and malformed notifications and handshakes, by kind.

Every kind is an async function that sends its cases to a live runtime webhook
and returns one `Outcome` per case; bench/attack.py judges them (status codes,
the inbox, the process, its log) and tests/runtime/test_webhook_attacks.py runs
the first case of each kind. The attacker here knows what a real one could:
the webhook URL, the subscription ids, the agent's public certificate, Entra's
public signing keys, a key of its own. Some kinds also use what only Graph has
(the clientState, a genuine validation token, the signing key) to show that each
check stands on its own: a notification that is genuine in every way but one is
still dropped, or, when only its validation tokens fail, its content is ignored and
the message it names is read from Graph (capped; SECURITY.md), so nothing forged is stored.
"""
from __future__ import annotations

# The corpus is split by layer; this module names the kinds and re-exports what bench/attack.py,
# bench/_attack_fuzz.py and tests/runtime/test_webhook_attacks.py use.

from ._attack_forgeries import (
    change_on_lifecycle_url,
    change_type_odd,
    client_state,
    decrypts_to_junk,
    encrypted_bad_base64,
    encrypted_bad_hmac,
    encrypted_other_cert,
    encrypted_swapped_key,
    encrypted_truncated,
    lifecycle_forged_token,
    lifecycle_wrong_client_state,
    replay_old,
    replay_same,
    token_alg_none,
    token_expired,
    token_hs256_public_key,
    token_missing,
    token_mixed,
    token_other_key,
    token_unknown_kid,
    token_wrong_claims,
    unknown_subscription,
    wrong_tenant,
)
from ._attack_claims import basic_item_flood, captured_token_forgery
from ._attack_lifecycle import lifecycle_flood_missed, lifecycle_flood_reauthorize, lifecycle_flood_removed
from ._attack_target import GENUINE_EXPIRY, MISSING, Kind, Outcome, Target, hs256_token, post, unsigned_token
from ._attack_wire import (
    slowloris_headers,
    compression_bomb,
    content_type_wrong,
    deep_nesting,
    fetch_id_injection,
    flood,
    handshake_giant_token,
    handshake_malformed_token,
    handshake_markup,
    handshake_with_body,
    http_protocol,
    huge_arrays,
    invalid_utf8,
    json_edge,
    methods_and_paths,
    oversize_body,
    slowloris_body,
)

KINDS: list[Kind] = [
    Kind("client_state_wrong", "genuine item and token, wrong/missing/odd clientState", client_state),
    Kind("unknown_subscription", "subscriptionId not ours (random, path-like, huge, empty)", unknown_subscription),
    Kind("wrong_tenant", "tenantId of another tenant", wrong_tenant),
    Kind("replay_same_notification", "one genuine notification posted 2x in a row and 5x at once", replay_same,
         events=1),
    Kind("replay_old_notification", "a stored notification replayed later, then with its expired token",
         replay_old, events=1),
    Kind("token_other_key", "validation token signed by another key under Entra's kid", token_other_key),
    Kind("token_unknown_kid", "token whose kid is not in the JWKS (202; the named message is read from Graph)",
         token_unknown_kid),
    Kind("token_alg_none", "unsigned tokens (alg none, NONE, stripped signature)", token_alg_none),
    Kind("token_hs256_public_key", "HS256 keyed with Entra's public key (key confusion)", token_hs256_public_key),
    Kind("token_wrong_claims", "Entra-signed token with wrong aud/iss/tid/azp/appid/ver", token_wrong_claims),
    Kind("token_expired", "expired, not yet valid, or odd exp", token_expired),
    Kind("token_missing", "rich items without usable validationTokens", token_missing),
    Kind("token_mixed", "a genuine token next to a bad one", token_mixed),
    Kind("encrypted_truncated", "encryptedContent data or dataKey truncated", encrypted_truncated),
    Kind("encrypted_bad_hmac", "dataSignature wrong, missing or short; data altered", encrypted_bad_hmac),
    Kind("encrypted_swapped_key", "dataKey/data of another notification", encrypted_swapped_key),
    Kind("encrypted_other_cert", "encrypted for another certificate, unknown cert ids", encrypted_other_cert),
    Kind("encrypted_bad_base64", "fields that are not base64", encrypted_bad_base64),
    Kind("decrypts_to_junk", "genuine crypto around a plaintext that is no usable chatMessage", decrypts_to_junk),
    Kind("change_type_odd", "updated/deleted/unknown changes, change+lifecycle, no resource", change_type_odd),
    Kind("lifecycle_wrong_client_state", "subscriptionRemoved/missed/reauthorizationRequired, forged",
         lifecycle_wrong_client_state),
    Kind("lifecycle_forged_token", "lifecycle events with the clientState but a forged token",
         lifecycle_forged_token),
    Kind("change_on_lifecycle_url", "a genuine change notification sent to the lifecycle URL",
         change_on_lifecycle_url),
    Kind("handshake_giant_token", "validationToken of 1 KB to 100 KB", handshake_giant_token),
    Kind("handshake_malformed_token", "bad escapes, not UTF-8, NUL, CRLF injection, empty, repeated",
         handshake_malformed_token),
    Kind("handshake_with_body", "a handshake carrying a genuine notification or 2 MiB", handshake_with_body),
    Kind("handshake_markup", "a token that is HTML", handshake_markup),
    Kind("content_type_wrong", "genuine notification under other content types", content_type_wrong),
    Kind("oversize_body", "2 MiB bodies (with length, chunked), a 1 TB Content-Length", oversize_body),
    Kind("invalid_utf8", "bodies that are not UTF-8 JSON", invalid_utf8),
    Kind("deep_nesting", "200,000-deep arrays, 50,000-deep objects", deep_nesting),
    Kind("huge_arrays", "300k items, ~1,500 forged items, 200k tokens, ~1,400 rich items each costing an RSA decryption",
         huge_arrays),
    Kind("json_edge", "not a collection, NaN, huge numbers, duplicate keys, trailing data, odd dates", json_edge),
    Kind("compression_bomb", "gzip/deflate bodies inflating to 1 GiB", compression_bomb),
    Kind("http_protocol", "smuggling shapes, bad chunks, huge heads, pipelining", http_protocol),
    Kind("slowloris_body", "bodies that stop or trickle", slowloris_body),
    Kind("slowloris_headers", "connections that never finish their head, or stay idle", slowloris_headers),
    Kind("methods_and_paths", "other methods and paths", methods_and_paths),
    Kind("fetch_id_injection", "basic mail items whose ids look like paths or queries", fetch_id_injection),
    Kind("flood", "thousands of forged POSTs at once, then a genuine one", flood, events=1),
    # What one captured genuine POST (its clientState, a live token) makes possible, and what it costs.
    Kind("captured_token_forgery", "own chatMessage encrypted to the agent, claiming the sponsor or an allowed "
         "colleague, under a captured clientState and token", captured_token_forgery),
    Kind("basic_item_flood", "items without resource data on the rich chat subscription: 1 POST of 200, then 100 POSTs "
         "of 20", basic_item_flood),
    Kind("lifecycle_flood_missed", "20 forged `missed` at once per subscription", lifecycle_flood_missed),
    Kind("lifecycle_flood_reauthorize", "20 forged `reauthorizationRequired` per subscription, twice",
         lifecycle_flood_reauthorize),
    # Last: before the lifecycle fix, a forged removal leaves the runtime without a renewed subscription.
    Kind("lifecycle_flood_removed", "20 forged `subscriptionRemoved` at once per subscription",
         lifecycle_flood_removed),
]

__all__ = ["GENUINE_EXPIRY", "KINDS", "MISSING", "Kind", "Outcome", "Target", "hs256_token", "post",
           "slowloris_headers", "unsigned_token"]
