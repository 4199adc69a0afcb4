"""Attack kinds at the HTTP level: handshakes, bodies, protocol abuse, floods.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import zlib
from typing import Any

import aiohttp
import anyio

from ._attack_target import GENUINE_EXPIRY, Outcome, post, raw, Target, unsigned_token, first_cases, http_request

async def handshake_giant_token(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    sizes = [1025, 4096, 7000, 16_384, 100_000]
    out = []
    for size in first_cases(sizes, quick):
        out.append(await post(s, t, f"token_{size}_chars", query="validationToken=" + "A" * size,
                              content_type="text/plain; charset=utf-8", allowed=(400, 414, 431)))
    return out


async def handshake_malformed_token(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    cases = [("bad_percent", "validationToken=%ZZabc", (200, 400)), ("not_utf8", "validationToken=%FF%FE", (400,)),
             ("nul", "validationToken=a%00b", (400,)), ("crlf_header_injection", "validationToken=x%0D%0ASet-Cookie:%20a=b",
                                                        (400,)),
             ("empty", "validationToken=", (400,)), ("no_equals", "validationToken", (400,)),
             ("bidi_override", "validationToken=%E2%80%AEabc", (200, 400)),
             ("repeated", "validationToken=first&validationToken=second", (200,))]
    out = []
    for name, query, allowed in first_cases(cases, quick):
        o = await post(s, t, name, query=query, content_type="text/plain; charset=utf-8", allowed=allowed)
        if name == "crlf_header_injection" and b"Set-Cookie" in o.headers.encode():
            o.problem = "leak: header injected through the echoed token"
        out.append(o)
    return out


async def handshake_with_body(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A handshake carrying a genuine notification: the token is echoed, the body never read."""
    body, key = t.valid()
    o = await post(s, t, "genuine_notification_in_handshake", body, query="validationToken=hello",
                   allowed=(200,))
    if o.status == 200 and o.body != b"hello":
        o.problem = "crash: handshake echoed something else"
    o.note = f"not stored: {key}"
    out = [o]
    if not quick:
        big = await post(s, t, "2MiB_body_in_handshake", b"x" * (2 * 1024 * 1024), query="validationToken=hello",
                         content_type="text/plain", allowed=(200,))
        out.append(big)
    return out


async def handshake_markup(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    o = await post(s, t, "script_token", query="validationToken=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                   content_type="text/plain", allowed=(200,))
    headers = o.headers.lower()
    if o.status == 200 and ("text/plain" not in headers or "nosniff" not in headers):
        o.problem = "leak: echoed markup without text/plain and nosniff"
    return [o]


async def content_type_wrong(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A genuine notification under a content type Graph never sends: dropped unread."""
    types = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None,
             "application/jsonx", "text/html", "application/xml"]
    out = []
    for ctype in first_cases(types, quick):
        body, _ = t.valid()
        out.append(await post(s, t, f"content_type_{ctype}", body, content_type=ctype))
    return out


async def oversize_body(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    big = b'{"value":[' + b" " * (2 * 1024 * 1024) + b"]}"

    async def chunked() -> Any:
        for i in range(0, len(big), 65_536):
            yield big[i:i + 65_536]

    out = [await post(s, t, "2MiB_with_length", big)]
    if not quick:
        out.append(await post(s, t, "2MiB_chunked", chunked()))  # type: ignore[arg-type]
        huge = http_request("POST", "/notifications", b'{"value":[]}', content_length=False)
        huge = huge.replace(b"\r\n\r\n", b"\r\nContent-Length: 1000000000000\r\n\r\n", 1)
        out.append(await raw(t, "content_length_1TB", [huge], wait=8))
    return out


async def invalid_utf8(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    good = t.body([t.item()])
    cases = [("lone_ff", b'{"value":[\xff]}'), ("inside_string", good.replace(b'"created"', b'"cr\xc3\x28ated"')),
             ("overlong_slash", b'{"value":[{"subscriptionId":"\xc0\xaf"}]}'),
             ("surrogate_escape", good.replace(b'"created"', b'"\\ud800"')),
             ("utf16", good.decode().encode("utf-16")), ("bom", b"\xef\xbb\xbf" + good)]
    return [await post(s, t, n, b) for n, b in first_cases(cases, quick)]


async def deep_nesting(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    item = t.item()
    deep_list = b"[" * 200_000 + b"]" * 200_000
    deep_obj = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    in_item = json.dumps({"value": [{**item, "resourceData": "@"}]}).encode().replace(b'"@"', deep_obj)
    in_extra = t.body([t.item()])[:-1] + b',"extra":' + deep_list + b"}"
    cases = [("top_level_arrays", b'{"value":' + deep_list + b"}"), ("in_resource_data", in_item),
             ("in_an_extra_field", in_extra), ("objects_only", deep_obj)]
    return [await post(s, t, n, b) for n, b in first_cases(cases, quick)]


async def huge_arrays(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Big batches: parsing and checking stay bounded by the body limit and the 8 s deadline."""
    cases: list[tuple[str, bytes]] = [("300k_empty_objects", b'{"value":[' + b",".join([b"{}"] * 300_000) + b"]}")]
    if not quick:
        # The batches below stay under the 1 MiB body limit, so they are parsed and checked item by item.
        forged = json.dumps(t.item(client_state="x", encrypted=None))
        n = 1_000_000 // (len(forged) + 1)
        cases.append((f"{n}_forged_items", ('{"value":[' + ",".join([forged] * n) + "]}").encode()))
        cases.append(("200k_tokens", json.dumps({"value": [t.item()], "validationTokens": ["a"] * 200_000}).encode()))
        # Well-formed lengths, so each item gets as far as an RSA decryption of its dataKey (which fails).
        junk = {"data": base64.b64encode(b"A" * 32).decode(), "dataKey": base64.b64encode(b"k" * 256).decode(),
                "dataSignature": base64.b64encode(b"s" * 32).decode(), "encryptionCertificateId": t.certificate_id}
        rich = json.dumps(t.item(encrypted=junk))
        n = 980_000 // (len(rich) + 1)
        cases.append((f"{n}_items_costing_a_decryption_each",
                      ('{"value":[' + ",".join([rich] * n) + f'],"validationTokens":["{t.token()}"]}}').encode()))
    return [await post(s, t, n, b) for n, b in cases]


async def json_edge(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    forged = t.body([t.item(client_state="x")])
    cases = [("empty_body", b""), ("whitespace", b"   \n"), ("array", b"[]"), ("null", b"null"), ("string", b'"x"'),
             ("empty_object", b"{}"), ("value_object", b'{"value":{}}'), ("value_null", b'{"value":null}'),
             ("nan", b'{"value":NaN}'), ("infinity", b'{"value":[{"subscriptionId":Infinity}]}'),
             ("huge_number", b'{"value":[{"subscriptionId":1' + b"0" * 100_000 + b"}]}"),
             ("duplicate_value_keys", b'{"value":[],' + forged[1:]),
             ("trailing_garbage", forged + b"garbage"), ("two_documents", forged + forged),
             ("comments", b'{"value":[] /* c */}'), ("single_quotes", b"{'value':[]}"),
             ("date_nonsense", forged.replace(GENUINE_EXPIRY.encode(), b"9999-99-99T99:99:99Z")),
             ("date_year_0", forged.replace(GENUINE_EXPIRY.encode(), b"0000-01-01T00:00:00Z"))]
    return [await post(s, t, n, b) for n, b in first_cases(cases, quick)]


def _rss_kb(pid: int, field: str = "VmHWM") -> int:
    try:
        for line in open(f"/proc/{pid}/status"):  # noqa: SIM115 - a tiny read
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def compression_bomb(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Content-Encoding bombs: aiohttp inflates request bodies; the limit counts inflated bytes."""
    size = 64 * 1024 * 1024 if quick else 1024 * 1024 * 1024
    payload = b'{"value":[' + b" " * size + b"]}"
    cases = [("gzip", gzip.compress(payload, 9), "gzip")]
    if not quick:
        cases.append(("deflate", zlib.compress(payload, 9), "deflate"))
        cases.append(("gzip_of_gzip", gzip.compress(gzip.compress(payload, 9), 9), "gzip"))
    out = []
    for name, body, encoding in cases:
        before = _rss_kb(t.pid)
        o = await post(s, t, f"{name}_{size >> 20}MiB_in_{len(body) >> 10}KiB", body,
                       headers={"Content-Encoding": encoding})
        grew = (_rss_kb(t.pid) - before) // 1024
        o.note = f"peak RSS +{grew} MiB"
        if grew > 256:
            o.problem = f"unbounded: peak RSS grew {grew} MiB"
        out.append(o)
    del payload
    return out


async def http_protocol(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """What no HTTP client sends: smuggling shapes, broken framing, oversized heads."""
    body = t.body([t.item(client_state="x")])
    te_cl = http_request("POST", "/notifications", b"0\r\n\r\n", {"Content-Type": "application/json",
                                                            "Transfer-Encoding": "chunked"})
    cases: list[tuple[str, list[bytes], tuple[int, ...]]] = [
        ("cl_and_te", [te_cl], (400, 202)),
        ("bad_chunk_size", [http_request("POST", "/notifications", b"zz\r\nabc\r\n0\r\n\r\n",
                                  {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                                  content_length=False)], (400, 202)),
        ("negative_length", [http_request("POST", "/notifications", b"", {"Content-Type": "application/json",
                                                                   "Content-Length": "-1"}, content_length=False)],
         (400,)),
        ("two_lengths", [http_request("POST", "/notifications", body, {"Content-Type": "application/json",
                                                               "Content-Length": "5"})], (400, 202)),
        ("obs_fold", [http_request("POST", "/notifications", body, {"Content-Type": "application/json\r\n x-fold: y"})],
         (400, 202)),
        ("header_100KiB", [http_request("POST", "/notifications", body, {"Content-Type": "application/json",
                                                                  "X-Big": "a" * 100_000})], (400, 431)),
        ("1000_headers", [http_request("POST", "/notifications", body,
                                {**{f"X-H{i}": "v" for i in range(1000)}, "Content-Type": "application/json"})],
         (400, 431, 202)),
        ("bad_request_line", [b"POST /notifications HTTP/9.9 extra\r\n\r\n"], (400, 505)),
        ("no_http_version", [b"GET /health\r\n\r\n"], (200, 400)),
        ("nul_in_path", [b"POST /notif\x00ications HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"], (400, 404)),
        ("pipelined_after_handshake", [http_request("POST", "/notifications?validationToken=a", b"") + http_request(
            "POST", "/notifications", body)], (200,)),
        ("absolute_uri", [http_request("POST", "http://evil.example/notifications", body)], (202, 400, 404)),
    ]
    out = []
    for name, chunks, allowed in first_cases(cases, quick):
        out.append(await raw(t, name, chunks, allowed=allowed, wait=8))
    return out


async def slowloris_body(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A body that stops, or trickles a byte every 200 ms: answered within the read timeout (5 s)."""
    host, _, port = t.base.removeprefix("http://").partition(":")
    head = http_request("POST", "/notifications", b"", content_length=False).replace(
        b"\r\n\r\n", b"\r\nContent-Length: 2000\r\n\r\n", 1)
    out = []
    for name, trickle in first_cases([("body_stops", False), ("body_one_byte_per_200ms", True)], quick):
        o = Outcome(name)
        began = time.monotonic()
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(head + b'{"value":[')
            data = b""
            with anyio.move_on_after(30):
                while not data:
                    with anyio.move_on_after(0.2):
                        data = await stream.receive()
                    if trickle and not data:
                        await stream.send(b" ")
        o.seconds = time.monotonic() - began
        o.status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
        o.note = f"answered after {o.seconds:.1f} s" if data else "no answer in 30 s"
        if o.seconds > 10:
            o.problem = f"unbounded: {o.note}"
        out.append(o)
    return out


async def slowloris_headers(s: aiohttp.ClientSession, t: Target, quick: bool, *, bound: float = 45.0,
                            connections: int = 20) -> list[Outcome]:
    """Connections that never finish their request head (or never send one) must be closed by the server.

    Without a bound each one holds a socket and a file descriptor for as long as
    the attacker likes, and enough of them stop Graph's deliveries.
    """
    host, _, port = t.base.removeprefix("http://").partition(":")
    results: list[Outcome] = []

    async def hold(n: int, idle: bool) -> None:
        began = time.monotonic()
        o = Outcome(f"{'idle' if idle else 'trickling_headers'}_{n}", allowed=frozenset({None}))  # type: ignore[arg-type]
        try:
            async with await anyio.connect_tcp(host, int(port)) as stream:
                with anyio.move_on_after(bound) as scope:
                    if not idle:
                        await stream.send(b"POST /notifications HTTP/1.1\r\nHost: x\r\n")
                    while True:
                        if idle:
                            await stream.receive()  # the server closing ends this with EndOfStream
                        else:
                            await anyio.sleep(1.0)
                            await stream.send(b"X-Slow: 1\r\n")
                if scope.cancelled_caught:
                    o.problem = f"unbounded: still open after {bound:.0f} s"
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass
        o.seconds = time.monotonic() - began
        o.note = f"closed by the server after {o.seconds:.1f} s" if not o.problem else o.problem
        results.append(o)

    async with anyio.create_task_group() as tg:
        for n in range(1 if quick else connections):
            tg.start_soon(hold, n, n % 2 == 1)
    return sorted(results, key=lambda o: o.case)


async def methods_and_paths(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    forged = t.body([t.item(client_state="x")])
    cases: list[tuple[str, str, str, tuple[int, ...]]] = [
        ("get", "GET", "/notifications", (405,)), ("put", "PUT", "/notifications", (405,)),
        ("delete", "DELETE", "/lifecycle", (405,)), ("options", "OPTIONS", "/notifications", (405, 200)),
        ("trace", "TRACE", "/notifications", (405,)), ("trailing_slash", "POST", "/notifications/", (404,)),
        ("other_path", "POST", "/admin", (404,)), ("encoded_path", "POST", "/%6Eotifications", (202, 404)),
        ("dot_segments", "POST", "/x/../notifications", (202, 404)), ("post_health", "POST", "/health", (405,)),
    ]
    out = []
    for name, method, path, allowed in first_cases(cases, quick):
        out.append(await post(s, t, name, forged, path=path, method=method, allowed=allowed))
    return out


async def fetch_id_injection(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Basic mail items (no encrypted content) with the right clientState name a message to fetch;
    ids shaped like paths or queries must not steer the runtime's Graph request elsewhere."""
    ids = ["../../users", "..", ".", "x?$select=id", "..%2F..%2Fusers", "x#frag", "a" * 5000,
           "https://evil.example/x", "../../../subscriptions", "x/../../../me/chats"]
    before = t.graph_requests()
    out = []
    for mid in first_cases(ids, quick):
        item = {"subscriptionId": t.mail_sub, "subscriptionExpirationDateTime": GENUINE_EXPIRY,
                "tenantId": t.tenant_id, "clientState": t.mail_client_state, "changeType": "created",
                "resource": f"Users/{t.agent_user_id}/Messages/{mid}",
                "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": mid}}
        out.append(await post(s, t, f"id_{mid[:24]}", json.dumps({"value": [item]}).encode()))
    await anyio.sleep(2.0)  # the fetch worker runs after the 202
    after = t.graph_requests()
    strays = {k: after.get(k, 0) - before.get(k, 0) for k in after
              if after.get(k, 0) != before.get(k, 0) and not k.startswith("GET /me/messages/")
              and "delta" not in k}
    if strays:
        out[0].problem = f"leak: message ids reached other Graph routes {strays}"
    out[0].note = "graph requests caused: " + json.dumps(
        {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)})
    return out


async def flood(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Many forged POSTs at once; afterwards a genuine notification is still stored at once."""
    n = 200 if quick else 3000
    bodies = [t.body([t.item(client_state="x")]), b"{}", b"[" * 1000, t.body([t.item()], [unsigned_token(t.claims())])]
    statuses: dict[int | None, int] = {}
    slowest = 0.0
    limit = anyio.Semaphore(64)

    async def one(i: int) -> None:
        nonlocal slowest
        async with limit:
            o = await post(s, t, "flood", bodies[i % len(bodies)])
            statuses[o.status] = statuses.get(o.status, 0) + 1
            slowest = max(slowest, o.seconds)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    summary = Outcome(f"{n}_forged_posts", status=202 if set(statuses) == {202} else max(
        (k for k in statuses if k is not None), default=None), note=f"statuses {statuses}, slowest {slowest:.2f} s")
    if None in statuses:
        summary.error = f"{statuses[None]} connections failed"
    body, key = t.valid()
    alive = await post(s, t, "genuine_after_flood", body)
    alive.note = key
    return [summary, alive]
