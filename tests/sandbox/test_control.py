"""The `/_sandbox/` control API over real HTTPS: acting as users and steering the emulator."""

from __future__ import annotations

import time

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.clock import parse_iso
from agentseat.sandbox.entra.tokens import user_graph_token
from tests.sandbox._graph import call


# --- acting as users ---------------------------------------------------------------------------------------------
async def test_direct_message_creates_the_chat_once_and_lists_oldest_first(sandbox: Sandbox) -> None:
    status, first, _ = await call(sandbox, "POST", "/_sandbox/messages",
                                  body={"from": "ada@contoso.test", "to": "agent@contoso.test", "text": "hi"})
    assert status == 201 and first["created"] is True and first["message_id"].isdigit()
    status, second, _ = await call(sandbox, "POST", "/_sandbox/messages",
                                   body={"from": "agent@contoso.test", "to": "ada@contoso.test", "text": "hello"})
    assert status == 201 and second["created"] is False and second["chat_id"] == first["chat_id"]
    status, third, _ = await call(sandbox, "POST", "/_sandbox/messages",
                                  body={"from": "ada@contoso.test", "chat_id": first["chat_id"],
                                        "text": "<b>bold</b>", "html": True})
    assert status == 201 and third["created"] is False
    status, listing, _ = await call(sandbox, "GET", f"/_sandbox/chats/{first['chat_id']}/messages")
    assert status == 200
    assert [(m["from"], m["text"]) for m in listing["messages"]] == [
        ("ada@contoso.test", "hi"), ("agent@contoso.test", "hello"), ("ada@contoso.test", "bold")]
    assert listing["messages"][2]["content_type"] == "html"
    assert parse_iso(listing["messages"][0]["created"]) <= parse_iso(listing["messages"][2]["created"])
    status, chats, _ = await call(sandbox, "GET", "/_sandbox/chats")
    assert [c["id"] for c in chats["chats"]] == [first["chat_id"]]
    assert sorted(chats["chats"][0]["members"]) == ["ada@contoso.test", "agent@contoso.test"]


async def test_control_messages_answer_400_and_404_with_a_reason(sandbox: Sandbox) -> None:
    cases = [
        ({"from": "nobody@contoso.test", "to": "agent@contoso.test", "text": "x"}, 404),
        ({"from": "ada@contoso.test", "to": "nobody@contoso.test", "text": "x"}, 404),
        ({"from": "ada@contoso.test", "chat_id": "19:missing@thread.v2", "text": "x"}, 404),
        ({"from": "ada@contoso.test", "to": "agent@contoso.test"}, 400),
        ({"from": "ada@contoso.test", "text": "x"}, 400),
        ({"from": "ada@contoso.test", "to": "ada@contoso.test", "text": "x"}, 400),
    ]
    for payload, expected in cases:
        status, body, _ = await call(sandbox, "POST", "/_sandbox/messages", body=payload)
        assert status == expected, payload
        assert body["error"]
    status, body, _ = await call(sandbox, "POST", "/_sandbox/messages", raw=b"{not json")
    assert status == 400 and "JSON" in body["error"]
    assert sandbox.tenant.chats == {}


async def test_control_mail_delivers_to_inboxes_and_lists_a_mailbox(sandbox: Sandbox) -> None:
    status, body, _ = await call(sandbox, "POST", "/_sandbox/mail", body={
        "from": "vendor@example.org", "to": ["agent@contoso.test", "grace@contoso.test"],
        "subject": "Invoice", "body": "Due Friday."})
    assert status == 201
    agent = sandbox.role("agent_user")
    [msg] = [m for m in sandbox.tenant.mail[agent]]
    assert body["message_id"] == msg.id and msg.folder == "inbox" and msg.from_address == "vendor@example.org"
    assert len(sandbox.tenant.mail[sandbox.role("colleague1")]) == 1
    status, listing, _ = await call(sandbox, "GET", "/_sandbox/mail/agent@contoso.test")
    assert status == 200 and [m["subject"] for m in listing["messages"]] == ["Invoice"]
    assert listing["messages"][0]["from"] == "vendor@example.org"
    outside = {"from": "ada@contoso.test", "to": "outsider@example.org", "subject": "", "body": ""}
    status, _, _ = await call(sandbox, "POST", "/_sandbox/mail", body=outside)
    assert status == 404
    assert (await call(sandbox, "POST", "/_sandbox/mail", body={"from": "ada@contoso.test", "to": 5}))[0] == 400
    assert (await call(sandbox, "GET", "/_sandbox/mail/nobody@contoso.test"))[0] == 404


async def test_control_users_names_the_well_known_roles(sandbox: Sandbox) -> None:
    status, body, _ = await call(sandbox, "GET", "/_sandbox/users")
    assert status == 200
    by_upn = {u["upn"]: u for u in body["users"]}
    agent = by_upn["agent@contoso.test"]
    assert agent["kind"] == "agentUser" and "agent_user" in agent["roles"]
    assert by_upn["ada@contoso.test"]["roles"] == ["sponsor"]


# --- steering -----------------------------------------------------------------------------------------------------
async def test_graph_fault_answers_429_with_the_configured_retry_after_until_cleared(sandbox: Sandbox) -> None:
    faults = {"notifications": {"drop": 0.1}, "graph": [{"route": "GET /me/chats", "rate": 1.0, "status": 429,
                                                         "retry_after": 2.128}], "seed": 1}
    status, body, _ = await call(sandbox, "POST", "/_sandbox/faults", body=faults)
    assert status == 200 and body["graph"][0]["retry_after"] == 2.128
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, body, headers = await call(sandbox, "GET", "/v1.0/me/chats", token)
    assert status == 429 and headers["Retry-After"] == "2.128"
    assert body["error"]["code"] == "TooManyRequests"
    status, current, _ = await call(sandbox, "GET", "/_sandbox/faults")
    assert current["notifications"]["drop"] == 0.1 and current["seed"] == 1
    assert (await call(sandbox, "DELETE", "/_sandbox/faults"))[0] == 200
    assert (await call(sandbox, "GET", "/v1.0/me/chats", token))[0] == 200


async def test_invalid_faults_are_400_and_change_nothing(sandbox: Sandbox) -> None:
    for bad in ({"notifications": {"drop": 2}}, {"graph": [{"route": "*", "rate": 1, "status": 418}]},
                {"graph": [{"route": "*", "rate": 1.5}]}, {"graph": [{"rate": "often"}]}, {"graph": ["x"]}):
        status, body, _ = await call(sandbox, "POST", "/_sandbox/faults", body=bad)
        assert status == 400, bad
        assert body["error"]
    _, current, _ = await call(sandbox, "GET", "/_sandbox/faults")
    assert current["graph"] == [] and current["notifications"]["drop"] == 0.0


async def test_key_rotation_returns_the_new_kid_and_new_tokens_still_work(sandbox: Sandbox) -> None:
    token_before = user_graph_token(sandbox, sandbox.role("agent_user"))
    old_kid = sandbox.pki.active.kid
    status, body, _ = await call(sandbox, "POST", "/_sandbox/keys/rotate")
    assert status == 200 and body["kid"] != old_kid and body["kid"] == sandbox.pki.active.kid
    await call(sandbox, "POST", "/_sandbox/throttle", body={"enabled": False})
    fresh = user_graph_token(sandbox, sandbox.role("agent_user"))
    assert (await call(sandbox, "GET", "/v1.0/me/chats", fresh))[0] == 200
    assert (await call(sandbox, "GET", "/v1.0/me/chats", token_before))[0] == 200  # older keys stay published


async def test_stats_count_graph_requests_and_reset(sandbox: Sandbox) -> None:
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    await call(sandbox, "GET", "/v1.0/me/chats", token)
    status, stats, _ = await call(sandbox, "GET", "/_sandbox/stats")
    assert status == 200 and stats["requests"]["GET /me/chats"] == 1
    assert stats["subscriptions"] == 0 and abs(parse_iso(stats["clock"]) - sandbox.clock.now()) < 60
    status, stats, _ = await call(sandbox, "DELETE", "/_sandbox/stats")
    assert status == 200 and stats["requests_total"] == 0
    _, stats, _ = await call(sandbox, "GET", "/_sandbox/stats")
    assert stats["requests"] == {}


async def test_clock_advances_and_changes_speed_but_never_rewinds(sandbox: Sandbox) -> None:
    before = sandbox.clock.now()
    status, body, _ = await call(sandbox, "POST", "/_sandbox/clock", body={"advance_seconds": 3600})
    assert status == 200 and parse_iso(body["clock"]) >= before + 3600
    status, body, _ = await call(sandbox, "POST", "/_sandbox/clock", body={"speed": 5})
    assert status == 200 and body["speed"] == 5 and sandbox.clock.speed == 5
    for bad in ({"advance_seconds": -1}, {"speed": 0}, {"speed": "fast"}, {}):
        assert (await call(sandbox, "POST", "/_sandbox/clock", body=bad))[0] == 400, bad
    # Tokens minted after a jump are judged on the sandbox clock, so they still work.
    fresh = user_graph_token(sandbox, sandbox.role("agent_user"))
    assert (await call(sandbox, "GET", "/v1.0/me/chats", fresh))[0] == 200


async def test_expiring_tokens_rejects_old_tokens_and_accepts_new_ones(sandbox: Sandbox) -> None:
    await call(sandbox, "POST", "/_sandbox/throttle", body={"enabled": False})
    agent = sandbox.role("agent_user")
    old = user_graph_token(sandbox, agent)
    assert (await call(sandbox, "GET", "/v1.0/me/chats", old))[0] == 200
    status, _, _ = await call(sandbox, "POST", "/_sandbox/tokens/expire")
    assert status == 200
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/chats", old)
    assert status == 401 and "expired" in body["error"]["message"]
    assert (await call(sandbox, "GET", "/v1.0/me/chats", user_graph_token(sandbox, agent)))[0] == 200


async def test_throttle_switch_lets_back_to_back_chat_lists_through(sandbox: Sandbox) -> None:
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, body, _ = await call(sandbox, "POST", "/_sandbox/throttle", body={"enabled": False})
    assert status == 200 and body == {"enabled": False}
    assert [(await call(sandbox, "GET", "/v1.0/me/chats", token))[0] for _ in range(3)] == [200, 200, 200]
    await call(sandbox, "POST", "/_sandbox/throttle", body={"enabled": True})
    assert [(await call(sandbox, "GET", "/v1.0/me/chats", token))[0] for _ in range(2)] == [200, 429]
    assert (await call(sandbox, "POST", "/_sandbox/throttle", body={"enabled": "no"}))[0] == 400


async def test_graph_latency_delays_graph_answers_but_not_the_control_api(sandbox: Sandbox) -> None:
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, body, _ = await call(sandbox, "POST", "/_sandbox/behaviour", body={"graph_latency_ms": [300, 300]})
    assert status == 200 and body["graph_latency_ms"] == [300, 300]
    # A lower bound only (a sleep never ends early), so it cannot flake on a slow box.
    started = time.monotonic()
    assert (await call(sandbox, "GET", "/v1.0/me/chats", token))[0] == 200
    assert time.monotonic() - started >= 0.3
    await call(sandbox, "POST", "/_sandbox/behaviour", body={"graph_latency_ms": [0, 0]})
    assert sandbox.behaviour.graph_latency_ms == (0, 0)


async def test_behaviour_reads_merges_and_names_a_bad_key(sandbox: Sandbox) -> None:
    status, defaults, _ = await call(sandbox, "GET", "/_sandbox/behaviour")
    assert status == 200 and defaults == {
        "validation_token_audience": "agent_identity", "chat_subscription_max_minutes": 4320,
        "chats_orderby": "supported", "messages_filter": "supported", "replication_delay_seconds": 0.0,
        "mailbox_ready_after_seconds": 0.0, "blueprint_key_route": "both", "graph_latency_ms": [0.0, 0.0],
        "delivery_delay_ms": {"chat": [0.0, 0.0], "mail": [0.0, 0.0]}, "outlook_max_concurrency": 4,
        "anonymous_sharing_links": "disabled", "search_max_size": 500}
    status, merged, _ = await call(sandbox, "POST", "/_sandbox/behaviour",
                                   body={"chats_orderby": "rejected", "delivery_delay_ms": {"mail": [10, 50]}})
    assert status == 200 and merged["chats_orderby"] == "rejected"
    assert merged["delivery_delay_ms"] == {"chat": [0.0, 0.0], "mail": [10.0, 50.0]}  # merged per kind
    assert (await call(sandbox, "GET", "/_sandbox/behaviour"))[1] == merged
    for bad, key in (({"chats_order": "rejected"}, "chats_order"), ({"chats_orderby": "sometimes"}, "chats_orderby"),
                     ({"chat_subscription_max_minutes": "60"}, "chat_subscription_max_minutes"),
                     ({"outlook_max_concurrency": True}, "outlook_max_concurrency"),
                     ({"graph_latency_ms": [300, 100]}, "graph_latency_ms"),
                     ({"delivery_delay_ms": {"fax": [1, 2]}}, "delivery_delay_ms.fax"),
                     ({"replication_delay_seconds": -1}, "replication_delay_seconds")):
        status, body, _ = await call(sandbox, "POST", "/_sandbox/behaviour", body=bad)
        assert status == 400 and body["key"] == key and key in body["error"], bad
    assert (await call(sandbox, "GET", "/_sandbox/behaviour"))[1] == merged  # a refused change changes nothing
