"""A basic notification of a channel subscription becomes a read of the post or reply it names."""

from __future__ import annotations

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
