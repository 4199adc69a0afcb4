"""Teams, channels and channel messages in the sandbox's Graph, over real HTTPS: user-list-joinedteams,
channel-list, channel-list-messages, chatmessage-list-replies, channel-post-messages and
chatmessage-post-replies, with their permissions, membership checks and paging."""

from __future__ import annotations

import json
from pathlib import Path

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra.tokens import app_token, user_graph_token
from agentseat.sandbox.tenant import TENANT_FILE, Tenant, load_tenant, save_tenant
from tests.sandbox._graph import call
from tests.sandbox._teams import control_post, make_team, mention
from tests.sandbox.test_graph_chats import no_throttle

AGENT, ADA, GRACE, ALAN = "agent@contoso.test", "ada@contoso.test", "grace@contoso.test", "alan@contoso.test"


def _agent(sb: Sandbox, scopes: list[str] | None = None) -> str:
    return user_graph_token(sb, sb.role("agent_user"), scopes)


def _msgs(team_id: str, channel_id: str) -> str:
    return f"/v1.0/teams/{team_id}/channels/{channel_id}/messages"


async def test_agent_lists_its_joined_teams_and_their_general_channel(sandbox: Sandbox) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA, name="Launch")
    await make_team(sandbox, ADA, GRACE, name="Finance")  # the agent is not in this one
    token = _agent(sandbox)
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/joinedTeams", token)
    assert status == 200, body
    assert [(t["id"], t["displayName"], t["isArchived"]) for t in body["value"]] == [(team_id, "Launch", False)]
    assert body["value"][0]["tenantId"] == sandbox.tenant.tenant_id and body["value"][0]["webUrl"] is None
    status, body, _ = await call(sandbox, "GET", f"/v1.0/teams/{team_id}/channels", token)
    assert status == 200, body
    [general] = body["value"]
    assert (general["id"], general["displayName"], general["membershipType"]) == (channel_id, "General", "standard")
    assert channel_id.startswith("19:") and channel_id.endswith("@thread.tacv2")
    status, one, _ = await call(sandbox, "GET", f"/v1.0/teams/{team_id}/channels/{channel_id}", token)
    assert status == 200 and one["displayName"] == "General"
    # Another member sees both of their teams.
    sponsor = user_graph_token(sandbox, sandbox.role("sponsor"))
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/joinedTeams", sponsor)
    assert sorted(t["displayName"] for t in body["value"]) == ["Finance", "Launch"]


async def test_outsiders_get_403_and_unknown_teams_channels_and_messages_404(sandbox: Sandbox) -> None:
    no_throttle(sandbox)
    team_id, channel_id = await make_team(sandbox, ADA, GRACE)
    post_id = await control_post(sandbox, team_id, channel_id, ADA, "members only")
    token = _agent(sandbox)
    for method, path in (("GET", f"/v1.0/teams/{team_id}/channels"), ("GET", _msgs(team_id, channel_id)),
                         ("GET", f"{_msgs(team_id, channel_id)}/{post_id}"),
                         ("GET", f"{_msgs(team_id, channel_id)}/{post_id}/replies")):
        status, body, _ = await call(sandbox, method, path, token)
        assert status == 403 and body["error"]["code"] == "Forbidden", (path, body)
    sent = {"body": {"content": "let me in"}}
    for path in (_msgs(team_id, channel_id), f"{_msgs(team_id, channel_id)}/{post_id}/replies"):
        status, body, _ = await call(sandbox, "POST", path, token, body=sent)
        assert status == 403, body
    mine, general = await make_team(sandbox, AGENT, ADA)
    for path in ("/v1.0/teams/00000000-0000-0000-0000-000000000000/channels", _msgs(mine, "19:nope@thread.tacv2"),
                 f"{_msgs(mine, general)}/1234", f"{_msgs(mine, general)}/1234/replies"):
        status, body, _ = await call(sandbox, "GET", path, token)
        assert status == 404 and body["error"]["code"] == "NotFound", (path, body)
        assert set(body["error"]) >= {"code", "message", "innerError"}


async def test_agent_posts_and_replies_and_reads_the_thread_back(sandbox: Sandbox) -> None:
    no_throttle(sandbox)
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    token, base = _agent(sandbox), _msgs(team_id, channel_id)
    status, post, _ = await call(sandbox, "POST", base, token, body={"body": {"contentType": "text",
                                                                              "content": "Release is green"}})
    assert status == 201, post
    assert post["replyToId"] is None and post["chatId"] is None
    assert post["channelIdentity"] == {"teamId": team_id, "channelId": channel_id}
    assert post["from"]["user"]["id"] == sandbox.role("agent_user") and post["body"]["content"] == "Release is green"
    assert post["@odata.context"].endswith("/messages/$entity") and f"groupId={team_id}" in post["webUrl"]
    reply_id = await control_post(sandbox, team_id, channel_id, ADA, "great, thanks", reply_to=post["id"])
    status, reply, _ = await call(sandbox, "POST", f"{base}/{post['id']}/replies", token,
                                  body={"body": {"content": "you're welcome"}})
    assert status == 201, reply
    assert reply["replyToId"] == post["id"] and reply["channelIdentity"]["channelId"] == channel_id
    assert reply["@odata.context"].endswith(f"messages('{post['id']}')/replies/$entity")
    # The channel lists root posts only ("without the replies"); replies come from /replies, newest first.
    status, listed, _ = await call(sandbox, "GET", base, token)
    assert status == 200 and [m["id"] for m in listed["value"]] == [post["id"]]
    status, replies, _ = await call(sandbox, "GET", f"{base}/{post['id']}/replies", token)
    assert [m["id"] for m in replies["value"]] == [reply["id"], reply_id]
    assert all(m["replyToId"] == post["id"] for m in replies["value"])
    status, expanded, _ = await call(sandbox, "GET", f"{base}?$expand=replies", token)
    assert [m["id"] for m in expanded["value"][0]["replies"]] == [reply["id"], reply_id]
    status, one, _ = await call(sandbox, "GET", f"{base}/{post['id']}", token)
    assert status == 200 and one["id"] == post["id"] and one["replyToId"] is None
    status, got, _ = await call(sandbox, "GET", f"{base}/{post['id']}/replies/{reply_id}", token)
    assert status == 200 and got["body"]["content"] == "great, thanks" and got["replyToId"] == post["id"]
    # A reply is not a post: it takes no replies of its own and is not found as a message.
    status, body, _ = await call(sandbox, "POST", f"{base}/{reply_id}/replies", token, body={"body": {"content": "x"}})
    assert status == 404, body
    status, _, _ = await call(sandbox, "GET", f"{base}/{reply_id}", token)
    assert status == 404


async def test_channel_routes_need_their_documented_scopes(sandbox: Sandbox) -> None:
    no_throttle(sandbox)
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    chat_only = _agent(sandbox, ["Chat.ReadWrite", "ChatMessage.Send"])
    for method, path, body in (("GET", "/v1.0/me/joinedTeams", None), ("GET", f"/v1.0/teams/{team_id}/channels", None),
                               ("GET", _msgs(team_id, channel_id), None),
                               ("POST", _msgs(team_id, channel_id), {"body": {"content": "hi"}})):
        status, got, _ = await call(sandbox, method, path, chat_only, body=body)
        assert status == 403 and "Missing scope permissions" in got["error"]["message"], (path, got)
    read_only = _agent(sandbox, ["ChannelMessage.Read.All"])
    status, _, _ = await call(sandbox, "GET", _msgs(team_id, channel_id), read_only)
    assert status == 200
    status, got, _ = await call(sandbox, "POST", _msgs(team_id, channel_id), read_only, body={"body": {"content": "hi"}})
    assert status == 403 and "ChannelMessage.Send" in got["error"]["message"]
    # Sending with an application permission is migration only (Teamwork.Migrate.All), not a bot's post.
    app = app_token(sandbox, app_id=sandbox.role("agent_identity"), roles=["ChannelMessage.Read.All"])[0]
    status, _, _ = await call(sandbox, "GET", _msgs(team_id, channel_id), app)
    assert status == 200
    status, _, _ = await call(sandbox, "POST", _msgs(team_id, channel_id), app, body={"body": {"content": "hi"}})
    assert status == 403


async def test_posts_page_newest_first_with_top_at_most_50(sandbox: Sandbox) -> None:
    no_throttle(sandbox)
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    ids = [await control_post(sandbox, team_id, channel_id, ADA, f"post {n}") for n in range(5)]
    token, base = _agent(sandbox), _msgs(team_id, channel_id)
    status, body, _ = await call(sandbox, "GET", f"{base}?$top=51", token)
    assert status == 400 and "'50'" in body["error"]["message"]
    seen: list[str] = []
    status, body, _ = await call(sandbox, "GET", f"{base}?$top=2", token)
    while True:
        assert status == 200 and len(body["value"]) <= 2
        seen += [m["id"] for m in body["value"]]
        if "@odata.nextLink" not in body:
            break
        status, body, _ = await call(sandbox, "GET", body["@odata.nextLink"], token)
    assert seen == list(reversed(ids))
    status, body, _ = await call(sandbox, "GET", f"{base}/{ids[0]}/replies?$top=51", token)
    assert status == 400


async def test_posts_carry_checked_mentions(sandbox: Sandbox) -> None:
    no_throttle(sandbox)
    team_id, channel_id = await make_team(sandbox, AGENT, ADA, GRACE)
    token, base, grace = _agent(sandbox), _msgs(team_id, channel_id), sandbox.role("colleague1")
    missing = {"body": {"contentType": "html", "content": "hi Grace"},
               "mentions": [mention(0, "Grace Hopper", grace)]}
    status, body, _ = await call(sandbox, "POST", base, token, body=missing)
    assert status == 400 and "marker for mention" in body["error"]["message"]
    sent = {"body": {"contentType": "html", "content": '<at id="0">Grace Hopper</at> can you check?'},
            "mentions": [mention(0, "Grace Hopper", grace)]}
    status, post, _ = await call(sandbox, "POST", base, token, body=sent)
    assert status == 201 and post["mentions"][0]["mentioned"]["user"]["id"] == grace
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/teams/{team_id}/channels/{channel_id}/messages")
    assert view["messages"][0]["mentions"] == [{"id": 0, "text": "Grace Hopper", "user_id": grace,
                                                "upn": GRACE}]


async def test_control_view_shows_posts_with_their_replies_and_mentions(sandbox: Sandbox) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA, GRACE)
    post = await control_post(sandbox, team_id, channel_id, ADA, "@agent@contoso.test please deploy",
                              mentions=[AGENT])
    reply = await control_post(sandbox, team_id, channel_id, GRACE, "+1", reply_to=post)
    second = await control_post(sandbox, team_id, channel_id, GRACE, "another topic")
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/teams/{team_id}/channels/{channel_id}/messages")
    assert status == 200 and view["channel"] == "General"
    first, other = view["messages"]
    assert (first["id"], first["from"], first["reply_to"]) == (post, ADA, None)
    assert first["text"] == "agentseat agent please deploy" and first["content_type"] == "html"
    assert first["mentions"][0]["upn"] == AGENT
    assert [(r["id"], r["from"], r["reply_to"], r["text"]) for r in first["replies"]] == [(reply, GRACE, post, "+1")]
    assert (other["id"], other["replies"]) == (second, [])
    # The agent reads the same thread through Graph, mention included.
    status, got, _ = await call(sandbox, "GET", f"{_msgs(team_id, channel_id)}/{post}", _agent(sandbox))
    assert got["mentions"][0]["mentioned"]["user"]["id"] == sandbox.role("agent_user")


async def test_control_refuses_bad_channel_messages(sandbox: Sandbox) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    post = await control_post(sandbox, team_id, channel_id, ADA, "root")
    reply = await control_post(sandbox, team_id, channel_id, ADA, "reply", reply_to=post)
    base = {"from": ADA, "team_id": team_id, "channel_id": channel_id, "text": "x"}
    cases = [({**base, "from": GRACE}, 400), ({**base, "team_id": "nope"}, 404), ({**base, "channel_id": "nope"}, 404),
             ({**base, "reply_to": "999"}, 404), ({**base, "reply_to": reply}, 404), ({**base, "text": ""}, 400),
             ({**base, "mentions": ["nobody@x"]}, 404)]
    for sent, expected in cases:
        status, body, _ = await call(sandbox, "POST", "/_sandbox/channel-messages", body=sent)
        assert status == expected and "error" in body, (sent, body)
    for bad in ({"name": "x", "members": []}, {"name": "", "members": [ADA]}, {"name": "x", "members": ["nobody@x"]}):
        status, _, _ = await call(sandbox, "POST", "/_sandbox/teams", body=bad)
        assert status in (400, 404)


async def test_membership_changes_reach_graph(sandbox: Sandbox) -> None:
    team_id, channel_id = await make_team(sandbox, ADA)
    token = _agent(sandbox)
    status, _, _ = await call(sandbox, "GET", f"/v1.0/teams/{team_id}/channels", token)
    assert status == 403
    status, body, _ = await call(sandbox, "POST", f"/_sandbox/teams/{team_id}/members", body={"member": AGENT})
    assert status == 200 and AGENT in body["members"]
    status, body, _ = await call(sandbox, "POST", f"/_sandbox/teams/{team_id}/channels", body={"name": "Ops"})
    assert status == 201
    status, got, _ = await call(sandbox, "GET", f"/v1.0/teams/{team_id}/channels", token)
    assert [c["displayName"] for c in got["value"]] == ["General", "Ops"]
    status, _, _ = await call(sandbox, "DELETE", f"/_sandbox/teams/{team_id}/members/{AGENT}")
    assert status == 200
    status, got, _ = await call(sandbox, "GET", "/v1.0/me/joinedTeams", token)
    assert status == 200 and got["value"] == []


async def test_teams_and_channel_messages_survive_a_restart_and_old_tenants_load(sandbox: Sandbox,
                                                                                 tmp_path: Path) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    post = await control_post(sandbox, team_id, channel_id, ADA, "persist me")
    await control_post(sandbox, team_id, channel_id, AGENT, "and me", reply_to=post)
    sandbox.portal.call(save_tenant, sandbox.tenant, tmp_path / "saved")  # type: ignore[attr-defined]
    loaded = load_tenant(tmp_path / "saved")
    assert loaded is not None
    team = loaded.teams[team_id]
    assert team.channels[0].id == channel_id and team.channel(channel_id) is not None
    thread = loaded.channel_messages[channel_id]
    assert [(m.content, m.reply_to_id, m.team_id) for m in thread] == [("persist me", None, team_id),
                                                                        ("and me", post, team_id)]
    # A tenant.json from before team channels has neither key, and still loads.
    raw = json.loads((tmp_path / "saved" / TENANT_FILE).read_text())
    del raw["teams"], raw["channel_messages"]
    old = Tenant.from_json(raw)
    assert old.teams == {} and old.channel_messages == {}
