"""Channel notifications' resources and channel chatMessages, turned into ids and `channel` Events."""

from __future__ import annotations

from typing import Any

import pytest

from agentseat.channels import names
from agentseat.channels.normalize import ChannelRef, channel_message_event, parse_resource
from agentseat.channels.push import thread_of
from agentseat.runtime.group_policy import pushes
from agentseat.runtime.normalize import TrustPolicy
from agentseat.tools.channel import envelope

AGENT, ADA, SPONSOR = "a0000000-0000-0000-0000-000000000001", "a0000000-0000-0000-0000-000000000002", \
    "a0000000-0000-0000-0000-000000000003"
TEAM, CHANNEL = "b0000000-0000-0000-0000-0000000000aa", "19:general0123@thread.tacv2"
POLICY = TrustPolicy(tenant_id="t", sponsor_ids={SPONSOR}, own_ids={AGENT})


@pytest.mark.parametrize(("resource", "expected"), [
    (f"teams('{TEAM}')/channels('{CHANNEL}')/messages('1700000000001')",
     ChannelRef(TEAM, CHANNEL, "1700000000001")),
    (f"teams('{TEAM}')/channels('{CHANNEL}')/messages('1700000000001')/replies('1700000000002')",
     ChannelRef(TEAM, CHANNEL, "1700000000001", "1700000000002")),
    (f"/teams/{TEAM}/channels/19%3Ageneral0123%40thread.tacv2/messages/17", ChannelRef(TEAM, CHANNEL, "17")),
])
def test_channel_resources_name_the_post_or_the_reply(resource: str, expected: ChannelRef) -> None:
    assert parse_resource(resource) == expected


@pytest.mark.parametrize("resource", [
    "chats('19:x@thread.v2')/messages('1')", f"teams('{TEAM}')/channels('{CHANNEL}')", "", None,
    f"teams('{TEAM}')/channels('')/messages('1')",
])
def test_resources_that_name_no_channel_message_parse_to_none(resource: str | None) -> None:
    assert parse_resource(resource) is None


def message(sender: str = ADA, *, reply_to: str | None = None, mentions: list[str] = (), mid: str = "17",
            **extra: Any) -> dict[str, Any]:
    return {"id": mid, "messageType": "message", "createdDateTime": "2026-12-06T10:00:00.0000000Z",
            "replyToId": reply_to, "chatId": None, "channelIdentity": {"teamId": TEAM, "channelId": CHANNEL},
            "from": {"user": {"id": sender, "displayName": "Ada Lovelace", "tenantId": "t"}},
            "body": {"contentType": "html", "content": "<p>hello <at id=\"0\">Agent</at></p>"},
            "mentions": [{"id": 0, "mentionText": "Agent", "mentioned": {"user": {"id": m}}} for m in mentions],
            **extra}


def test_a_root_post_that_mentions_the_agent_is_a_channel_event_that_pushes() -> None:
    event = channel_message_event(message(mentions=[AGENT]), POLICY, source="poll", confirmed=True)
    assert event is not None
    assert (event.kind, event.team_id, event.chat_id, event.thread_id) == ("channel", TEAM, CHANNEL, "")
    assert event.key == f"channel:{CHANNEL}:17" and event.mentioned and event.text == "hello Agent"
    assert pushes(event, "mention") and thread_of(event) == "17"


def test_a_reply_carries_its_thread_and_without_a_mention_is_stored_not_pushed() -> None:
    event = channel_message_event(message(reply_to="11", mid="18"), POLICY, source="webhook", confirmed=True)
    assert event is not None and event.thread_id == "11" and thread_of(event) == "11"
    assert not event.mentioned and event.trust == "colleague"
    assert not pushes(event, "mention") and not pushes(event, "all")  # channels are mention-gated always


def test_a_sponsor_is_pushed_without_a_mention() -> None:
    event = channel_message_event(message(SPONSOR), POLICY, source="poll", confirmed=True)
    assert event is not None and event.trust == "sponsor" and pushes(event, "mention")


@pytest.mark.parametrize("msg", [
    message(AGENT),  # the agent's own post never becomes an event
    message(messageType="systemEventMessage"),
    message(deletedDateTime="2026-12-06T10:01:00Z"),
    {**message(), "channelIdentity": None},  # nowhere to say where it was, unless the reader says
])
def test_own_system_deleted_or_placeless_messages_are_no_events(msg: dict[str, Any]) -> None:
    assert channel_message_event(msg, POLICY, source="poll", confirmed=True) is None


def test_where_it_was_read_wins_over_what_the_message_claims() -> None:
    msg = {**message(), "channelIdentity": {"teamId": "other", "channelId": "19:other@thread.tacv2"}}
    event = channel_message_event(msg, POLICY, source="poll", confirmed=True, team_id=TEAM, channel_id=CHANNEL)
    assert event is not None and (event.team_id, event.chat_id) == (TEAM, CHANNEL)


def test_the_push_names_team_and_channel_and_carries_the_thread_in_meta() -> None:
    names.remember(TEAM, "Research", CHANNEL, "General")
    event = channel_message_event(message(reply_to="11", mid="18", mentions=[AGENT]), POLICY, source="poll",
                                  confirmed=True)
    assert event is not None
    params = envelope(event)
    head = params["content"].splitlines()[0]
    assert head.startswith("Teams channel reply from Ada Lovelace in Research/General (colleague, untrusted")
    meta = params["meta"]
    assert {k: meta[k] for k in ("kind", "team_id", "channel_id", "thread_id", "message_id", "mentioned")} == {
        "kind": "channel", "team_id": TEAM, "channel_id": CHANNEL, "thread_id": "11", "message_id": "18",
        "mentioned": "true"}
    assert meta["user_id"] == ADA and meta["ts"] and meta["user"] == "Ada Lovelace"


def test_a_long_channel_post_is_cut_and_points_at_the_channel_reader() -> None:
    msg = {**message(mentions=[AGENT]), "body": {"contentType": "text", "content": "x" * 5000}}
    event = channel_message_event(msg, POLICY, source="poll", confirmed=True)
    assert event is not None
    assert envelope(event)["content"].endswith("read the whole message with read_channel_messages]")


def test_a_channel_post_lists_its_pasted_image_for_download_attachment() -> None:
    src = (f"https://graph.microsoft.com/v1.0/teams/{TEAM}/channels/{CHANNEL}/messages/17/hostedContents/"
           "aWQ9eF8wLHR5cGU9MQ==/$value")
    body = {"contentType": "html", "content": f'look <img src="{src}" alt="shot.png">'}
    msg = {**message(mentions=[AGENT]), "body": body}
    event = channel_message_event(msg, POLICY, source="poll", confirmed=True)
    assert event is not None
    [image] = event.attachment_list()
    assert image["type"] == "image" and image["id"]
    meta = envelope(event)["meta"]
    assert meta["attachment_count"] == "1" and meta["attachments"].startswith(f"{image['id']}:")
