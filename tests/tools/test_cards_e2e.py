"""send_card end to end: `agentseat serve` on the sandbox, driven by mcp's real stdio client; the card is
read back as Teams would show it, through the sandbox's control API."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentseat.sandbox.app import Sandbox
from tests.tools._mcp import chat_messages, post_dm, serve

CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [
    {"type": "TextBlock", "text": "Nightly report", "weight": "Bolder"},
    {"type": "FactSet", "facts": [{"title": "tests", "value": "412 passed"}]}],
    "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://ci.example.test/7"}]}


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}


async def test_cards_land_in_the_sponsors_chat_and_invalid_ones_are_refused(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = (sandbox.tenant.users[sandbox.role(r)].upn for r in ("sponsor", "agent_user"))
    chat_id = (await post_dm(sandbox, sponsor, agent, "send me the report"))["chat_id"]
    async with serve(env, tmp_path) as served:
        sent = await served.call_json("send_card", chat_id=chat_id, card=CARD)
        shown = next(m for m in await chat_messages(sandbox, chat_id) if m["id"] == sent["message_id"])
        assert shown["from"] == agent and shown["content_type"] == "html"
        assert shown["content"] == f'<attachment id="{sent["attachment_id"]}"></attachment>'
        assert shown["attachments"] == [{"id": sent["attachment_id"],
                                         "content_type": "application/vnd.microsoft.card.adaptive", "card": CARD}]

        built = await served.call_json("send_card", chat_id=chat_id, template="build_result",
                                       fields={"name": "CI #42", "result": "failed", "commit": "abc123"})
        card = next(m for m in await chat_messages(sandbox, chat_id)
                    if m["id"] == built["message_id"])["attachments"][0]["card"]
        assert card["version"] == "1.5" and card["body"][0]["text"] == "CI #42"
        assert card["body"][1] == {"type": "TextBlock", "text": "FAILED", "color": "attention", "weight": "Bolder"}
        assert {"title": "commit", "value": "abc123"} in card["body"][2]["facts"]

        before = len(await chat_messages(sandbox, chat_id))
        bad = {**CARD, "body": [{"type": "TextBlock"}, {"type": "Table"}], "version": "1.6"}
        refused = await served.call("send_card", chat_id=chat_id, card=bad)
        text = refused.content[0].text  # type: ignore[union-attr]
        assert refused.is_error and "invalid Adaptive Card" in text
        assert "$.version: 1.6 is newer than 1.5" in text and "$.body[0].text: is required for TextBlock" in text
        missing = await served.call("send_card", chat_id=chat_id, template="status", fields={"title": "x"})
        assert missing.is_error and "missing status" in missing.content[0].text  # type: ignore[union-attr]
        both = await served.call("send_card", chat_id=chat_id, card=CARD, template="status")
        assert both.is_error and "exactly one of card and template" in both.content[0].text  # type: ignore[union-attr]
        assert len(await chat_messages(sandbox, chat_id)) == before
