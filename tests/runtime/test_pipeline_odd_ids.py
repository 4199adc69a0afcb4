"""A genuine notification whose chatMessage carries ids that are not strings stores nothing.

Found by the attack corpus (bench/attack.py, kind decrypts_to_junk): with
genuine crypto, token and clientState around it, a chatMessage whose `chatId`
or sender id was a JSON object, or whose `id` was a number, became an event
keyed `teams:{'x': ...}:...` or sent by "{'x': 1}" (the normaliser called str()).
"""

from __future__ import annotations

from typing import Any

import pytest

from ._notify import CHAT_ID, Keys, World, body, change_item, chat_message, encrypt, rich_chat_item


def _with_sender_id(value: Any) -> dict[str, Any]:
    message = chat_message("1612289765950")
    message["from"]["user"]["id"] = value
    return message


@pytest.mark.parametrize("message", [
    chat_message("1612289765950", chatId={"x": CHAT_ID}),
    chat_message("1612289765950", id=1612289765950),
    _with_sender_id({"x": 1}),
    _with_sender_id(12345),
], ids=["chat_id_object", "message_id_number", "sender_id_object", "sender_id_number"])
async def test_ids_that_are_not_strings_make_no_event(world: World, keys: Keys, message: dict[str, Any]) -> None:
    item = change_item(resource_id="1612289765950", encrypted=encrypt(keys, message))  # only the payload is odd
    result = await world.pipeline.process(body([item], [world.token()]), lifecycle_endpoint=False)
    assert result.stored == 0 and world.inbox.count() == 0


async def test_the_same_message_with_string_ids_is_stored(world: World, keys: Keys) -> None:
    result = await world.pipeline.process(body([rich_chat_item(keys, chat_message("1612289765950"))],
                                               [world.token()]), lifecycle_endpoint=False)
    assert result.stored == 1
