"""The sandbox's Outlook mail over real HTTPS: read, send, reply, update, delete and delta."""

from __future__ import annotations

from typing import Any

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.graph.mail import delete_message, deliver_mail, mark_read
from agentseat.sandbox.entra.tokens import app_token, delegated_token, user_graph_token
from tests.sandbox._graph import call, on_loop


def token_for(sb: Sandbox, user_id: str, *scopes: str) -> str:
    return delegated_token(sb, user_id=user_id, app_id=sb.role("agent_identity"), scopes=list(scopes))[0]


def inbox(sb: Sandbox, user_id: str, folder: str = "inbox") -> list[Any]:
    return [m for m in sb.tenant.mail.get(user_id, []) if m.folder == folder and not m.deleted]


def send_body(to: list[str], subject: str = "Status", **extra: Any) -> dict[str, Any]:
    return {"message": {"subject": subject, "body": {"contentType": "Text", "content": "All good."},
                        "toRecipients": [{"emailAddress": {"address": a}} for a in to]}, **extra}


# --- sending ---------------------------------------------------------------------------------------------------
async def test_send_mail_is_202_and_lands_in_the_recipient_inbox_and_sent_items(sandbox: Sandbox) -> None:
    agent, sponsor = sandbox.role("agent_user"), sandbox.role("sponsor")
    status, body, _ = await call(sandbox, "POST", "/v1.0/me/sendMail", user_graph_token(sandbox, agent),
                                 body=send_body(["ada@contoso.test", "someone@example.org"]))
    assert status == 202 and body == ""
    [received] = inbox(sandbox, sponsor)
    assert received.subject == "Status" and received.body == "All good."
    assert received.from_address == "agent@contoso.test"
    assert received.internet_message_id.endswith("@contoso.test>")
    [sent] = inbox(sandbox, agent, "sentitems")
    assert sent.conversation_id == received.conversation_id and sent.is_read


async def test_send_mail_without_sent_copy_when_save_to_sent_items_is_false(sandbox: Sandbox) -> None:
    agent, sponsor = sandbox.role("agent_user"), sandbox.role("sponsor")
    status, _, _ = await call(sandbox, "POST", "/v1.0/me/sendMail", user_graph_token(sandbox, agent),
                              body=send_body(["ada@contoso.test"], saveToSentItems=False))
    assert status == 202
    assert len(inbox(sandbox, sponsor)) == 1 and inbox(sandbox, agent, "sentitems") == []


async def test_send_mail_refuses_no_recipients_no_token_and_no_mail_send(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")
    status, body, _ = await call(sandbox, "POST", "/v1.0/me/sendMail", user_graph_token(sandbox, agent),
                                 body=send_body([]))
    assert status == 400 and body["error"]["code"] == "ErrorInvalidRecipients"
    status, _, _ = await call(sandbox, "POST", "/v1.0/me/sendMail", body=send_body(["ada@contoso.test"]))
    assert status == 401
    status, _, _ = await call(sandbox, "POST", "/v1.0/me/sendMail", token_for(sandbox, agent, "Mail.Read"),
                              body=send_body(["ada@contoso.test"]))
    assert status == 403
    assert sandbox.tenant.mail.get(sandbox.role("sponsor"), []) == []


async def test_reply_goes_to_the_sender_with_re_subject_in_the_same_conversation(sandbox: Sandbox) -> None:
    agent, sponsor = sandbox.role("agent_user"), sandbox.role("sponsor")
    [original, _] = on_loop(sandbox, deliver_mail, sandbox, "ada@contoso.test", ["agent@contoso.test"], "Budget",
                            "Numbers?")
    status, _, _ = await call(sandbox, "POST", f"/v1.0/me/messages/{original.id}/reply",
                              user_graph_token(sandbox, agent), body={"comment": "Here they are."})
    assert status == 202
    [answer] = inbox(sandbox, sponsor)
    assert answer.subject == "RE: Budget" and answer.body == "Here they are."
    assert answer.conversation_id == original.conversation_id and answer.from_address == "agent@contoso.test"


# --- reading -----------------------------------------------------------------------------------------------------
async def test_list_messages_newest_first_with_select_and_skip_paging(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")

    def seed() -> list[str]:
        out = []
        for i in range(12):
            out.append(deliver_mail(sandbox, "ada@contoso.test", ["agent@contoso.test"], f"s{i}", "b")[0].id)
            sandbox.clock.advance(1)
        return out

    made = on_loop(sandbox, seed)
    token = user_graph_token(sandbox, agent)
    status, first, _ = await call(sandbox, "GET", "/v1.0/me/messages?$select=subject,from", token)
    assert status == 200 and len(first["value"]) == 10
    assert set(first["value"][0]) == {"@odata.etag", "id", "subject", "from"}
    assert first["@odata.nextLink"].startswith(sandbox.url + "/v1.0/me/messages?")
    status, second, _ = await call(sandbox, "GET", first["@odata.nextLink"], token)
    assert status == 200 and "@odata.nextLink" not in second
    assert [m["id"] for m in first["value"] + second["value"]] == list(reversed(made))
    assert set(second["value"][0]) == {"@odata.etag", "id", "subject", "from"}


async def test_folder_listing_and_get_by_id_with_select(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")
    received, _ = on_loop(sandbox, deliver_mail, sandbox, "ada@contoso.test", ["agent@contoso.test"], "In", "x")
    on_loop(sandbox, deliver_mail, sandbox, "agent@contoso.test", ["ada@contoso.test"], "Out", "y")
    token = user_graph_token(sandbox, agent)
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/mailFolders/inbox/messages", token)
    assert status == 200 and [m["subject"] for m in body["value"]] == ["In"]
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/mailFolders/SentItems/messages", token)
    assert status == 200 and [m["subject"] for m in body["value"]] == ["Out"]
    assert (await call(sandbox, "GET", "/v1.0/me/mailFolders/nope/messages", token))[0] == 404
    status, body, _ = await call(sandbox, "GET", f"/v1.0/users/{agent}/messages/{received.id}?$select=subject", token)
    assert status == 200 and body["subject"] == "In" and "body" not in body
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/messages/AAMkAunknown", token)
    assert status == 404 and body["error"]["code"] == "ErrorItemNotFound"


async def test_a_delegated_caller_cannot_read_another_mailbox(sandbox: Sandbox) -> None:
    sponsor = sandbox.role("sponsor")
    on_loop(sandbox, deliver_mail, sandbox, "grace@contoso.test", ["ada@contoso.test"], "Private", "x")
    status, body, _ = await call(sandbox, "GET", f"/v1.0/users/{sponsor}/messages",
                                 user_graph_token(sandbox, sandbox.role("agent_user")))
    assert status == 403 and body["error"]["code"] == "ErrorAccessDenied"


async def test_mail_read_basic_never_returns_the_body(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")
    on_loop(sandbox, deliver_mail, sandbox, "ada@contoso.test", ["agent@contoso.test"], "Hi", "secret body")
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/messages", token_for(sandbox, agent, "Mail.ReadBasic"))
    assert status == 200 and body["value"][0]["subject"] == "Hi"
    assert "body" not in body["value"][0] and "bodyPreview" not in body["value"][0]
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/messages", token_for(sandbox, agent, "Mail.Read"))
    assert body["value"][0]["body"]["content"] == "secret body"


async def test_marking_read_and_deleting_need_mail_read_write(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")
    msg, _ = on_loop(sandbox, deliver_mail, sandbox, "ada@contoso.test", ["agent@contoso.test"], "Hi", "x")
    path = f"/v1.0/me/messages/{msg.id}"
    assert (await call(sandbox, "PATCH", path, user_graph_token(sandbox, agent), body={"isRead": True}))[0] == 403
    writer = token_for(sandbox, agent, "Mail.ReadWrite")
    status, body, _ = await call(sandbox, "PATCH", path, writer, body={"isRead": True})
    assert status == 200 and body["isRead"] is True and msg.is_read
    assert (await call(sandbox, "PATCH", path, writer, body={"subject": "x"}))[0] == 400
    assert (await call(sandbox, "DELETE", path, writer))[0] == 204
    assert (await call(sandbox, "GET", path, writer))[0] == 404


# --- delta -------------------------------------------------------------------------------------------------------
async def _delta_round(sb: Sandbox, url: str, token: str, page_size: int) -> tuple[list[list[Any]], str]:
    """Follow nextLinks to the deltaLink; return the pages' values and the deltaLink."""
    pages = []
    while True:
        status, body, headers = await call(sb, "GET", url, token, headers={"Prefer": f"odata.maxpagesize={page_size}"})
        assert status == 200, body
        assert headers["Preference-Applied"] == f"odata.maxpagesize={page_size}"
        pages.append(body["value"])
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return pages, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]
        assert "/messages/delta?$skiptoken=" in url and url.startswith(sb.url + "/v1.0/")


async def test_mail_delta_syncs_across_pages_then_returns_only_changes_with_removed(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")
    made = on_loop(sandbox, lambda: [deliver_mail(sandbox, "ada@contoso.test", ["agent@contoso.test"], f"s{i}", "b")[0]
                                     for i in range(5)])
    token = user_graph_token(sandbox, agent)
    pages, delta_link = await _delta_round(sandbox, "/v1.0/me/mailFolders/inbox/messages/delta?$select=subject",
                                           token, 2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(m["id"] for p in pages for m in p) == sorted(m.id for m in made)
    assert all(set(m) == {"@odata.type", "@odata.etag", "id", "subject"} for p in pages for m in p)
    assert "/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=" in delta_link

    def change() -> str:
        new = deliver_mail(sandbox, "grace@contoso.test", ["agent@contoso.test"], "new", "b")[0]
        mark_read(sandbox, made[0])
        delete_message(sandbox, made[1])
        return new.id

    new_id = on_loop(sandbox, change)
    pages, delta_link = await _delta_round(sandbox, delta_link, token, 10)
    [changes] = pages
    by_id = {m["id"]: m for m in changes}
    assert set(by_id) == {new_id, made[0].id, made[1].id}
    assert by_id[made[1].id] == {"@odata.type": "#microsoft.graph.message", "id": made[1].id,
                                 "@removed": {"reason": "deleted"}}
    assert set(by_id[new_id]) == {"@odata.type", "@odata.etag", "id", "subject"}  # $select rode in the token
    pages, _ = await _delta_round(sandbox, delta_link, token, 10)
    assert pages == [[]]


async def test_mail_delta_change_type_created_reports_only_new_messages(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")
    old, _ = on_loop(sandbox, deliver_mail, sandbox, "ada@contoso.test", ["agent@contoso.test"], "old", "b")
    token = user_graph_token(sandbox, agent)
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/mailFolders/inbox/messages/delta?changeType=created",
                                 token)
    assert status == 200 and [m["id"] for m in body["value"]] == [old.id]

    def change() -> str:
        mark_read(sandbox, old)
        return deliver_mail(sandbox, "ada@contoso.test", ["agent@contoso.test"], "new", "b")[0].id

    new_id = on_loop(sandbox, change)
    status, body, _ = await call(sandbox, "GET", body["@odata.deltaLink"], token)
    assert status == 200 and [m["id"] for m in body["value"]] == [new_id]


async def test_mail_delta_filter_and_token_rules(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")
    token = user_graph_token(sandbox, agent)
    base = "/v1.0/me/mailFolders/inbox/messages/delta"
    status, body, _ = await call(sandbox, "GET", f"{base}?$filter=receivedDateTime%20ge%202020-01-01T00:00:00Z", token)
    assert status == 200 and "@odata.deltaLink" in body
    assert (await call(sandbox, "GET", f"{base}?$filter=isRead%20eq%20false", token))[0] == 400
    assert (await call(sandbox, "GET", f"{base}?$orderby=subject", token))[0] == 400
    assert (await call(sandbox, "GET", f"{base}?changeType=moved", token))[0] == 400
    status, body, _ = await call(sandbox, "GET", f"{base}?$deltatoken=forged", token)
    assert status == 400
    status, good, _ = await call(sandbox, "GET", base, token)
    # A deltaLink for the inbox is not valid for sent items.
    other = good["@odata.deltaLink"].replace("/mailFolders/inbox/", "/mailFolders/sentitems/")
    assert (await call(sandbox, "GET", other, token))[0] == 400


async def test_mail_delta_with_a_lost_sync_state_is_410(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")
    on_loop(sandbox, deliver_mail, sandbox, "ada@contoso.test", ["agent@contoso.test"], "x", "b")
    token = user_graph_token(sandbox, agent)
    _, body, _ = await call(sandbox, "GET", "/v1.0/me/mailFolders/inbox/messages/delta", token)

    def forget() -> None:  # as if the mailbox were restored from before the token was issued
        sandbox.tenant.mail_seq = 0

    sandbox.portal.call(forget)  # type: ignore[attr-defined]
    status, error, _ = await call(sandbox, "GET", body["@odata.deltaLink"], token)
    assert status == 410 and error["error"]["code"] == "SyncStateNotFound"


async def test_app_only_mail_read_reaches_any_mailbox_by_users_path(sandbox: Sandbox) -> None:
    sponsor = sandbox.role("sponsor")
    on_loop(sandbox, deliver_mail, sandbox, "grace@contoso.test", ["ada@contoso.test"], "To Ada", "x")
    token = app_token(sandbox, app_id=sandbox.role("provisioner"), roles=["Mail.Read"])[0]
    status, body, _ = await call(sandbox, "GET", f"/v1.0/users/{sponsor}/messages", token)
    assert status == 200 and [m["subject"] for m in body["value"]] == ["To Ada"]
    assert (await call(sandbox, "GET", "/v1.0/me/messages", token))[0] in (400, 403)
