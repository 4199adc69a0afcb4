"""A basic notification of a channel subscription becomes a read of the post or reply it names."""

from __future__ import annotations

from typing import Any

from agentseat.channels.normalize import ChannelRef
from agentseat.graph.models import ChangeNotification
from agentseat.graph.subscription import KnownSubscription
from agentseat.runtime.normalize import TrustPolicy
from agentseat.runtime.pipeline import Item, plan_actions
from agentseat.subscriptions.channels import channel_kind
from agentseat.subscriptions.known import KnownUnion, KnownView

TEAM, CHANNEL = "b0000000-0000-0000-0000-0000000000aa", "19:general0123@thread.tacv2"
SUB = KnownSubscription("s1", channel_kind(TEAM, CHANNEL), "secret", rich=False)  # type: ignore[arg-type]


def item(resource: str, change: str = "created") -> Item:
    n = ChangeNotification.model_validate({
        "subscriptionId": "s1", "subscriptionExpirationDateTime": "2026-12-09T00:00:00Z", "tenantId": "t",
        "clientState": "secret", "changeType": change, "resource": resource})
    return Item(n, SUB)


def test_posts_and_replies_are_read_from_graph_not_taken_from_the_notification() -> None:
    plan = plan_actions([item(f"teams('{TEAM}')/channels('{CHANNEL}')/messages('1')"),
                         item(f"teams('{TEAM}')/channels('{CHANNEL}')/messages('1')/replies('2')")], TrustPolicy())
    assert plan.channel_fetches == [ChannelRef(TEAM, CHANNEL, "1"), ChannelRef(TEAM, CHANNEL, "1", "2")]
    assert not plan.events and not plan.chat_fetches and not plan.drops


def test_a_channel_item_naming_no_message_is_dropped_and_edits_are_ignored() -> None:
    plan = plan_actions([item(f"teams('{TEAM}')/channels('{CHANNEL}')"),
                         item(f"teams('{TEAM}')/channels('{CHANNEL}')/messages('1')", "updated")], TrustPolicy())
    assert [d.reason for d in plan.drops] == ["malformed"] and plan.ignored == 1 and not plan.channel_fetches


def test_the_pipeline_screens_chat_and_channel_subscriptions_as_one_mapping() -> None:
    chats, channels = KnownView(), KnownView()
    chats.hold([KnownSubscription("c1", "teams", "x")])
    channels.hold([SUB])
    union = KnownUnion(chats, channels)
    assert union["s1"] is SUB and union["c1"].kind == "teams" and len(union) == 2 and "nope" not in union


RICH = KnownSubscription("s1", channel_kind(TEAM, CHANNEL), "secret", rich=True)  # type: ignore[arg-type]
POST = f"teams('{TEAM}')/channels('{CHANNEL}')/messages('1')"


def rich_item(payload: dict[str, Any] | None, fallback: str | None = None) -> Item:
    return Item(item(POST).notification, RICH, resource=payload, fallback=fallback)


def payload(mid: str = "1") -> dict[str, Any]:
    return {"id": mid, "messageType": "message", "createdDateTime": "2026-12-06T10:00:00Z", "replyToId": None,
            "from": {"user": {"id": "a0000000-0000-0000-0000-000000000002", "displayName": "Ada"}},
            "body": {"contentType": "text", "content": "hi"}, "mentions": []}


def test_a_rich_item_is_an_unconfirmed_event_and_odd_ones_are_dropped_or_read() -> None:
    plan = plan_actions([rich_item(payload()), rich_item(None), rich_item(None, fallback="token_bad_aud"),
                         rich_item(payload("2"))], TrustPolicy())
    [event] = plan.events
    assert (event.kind, event.team_id, event.chat_id, event.confirmed) == ("channel", TEAM, CHANNEL, False)
    assert [d.reason for d in plan.drops] == ["basic_on_rich"]  # resource data missing: not Graph's
    assert plan.channel_fetches == [ChannelRef(TEAM, CHANNEL, "1")]  # tokens failed: read from Graph
    assert plan.ignored == 1  # a payload that is not the message the resource names
