"""download_attachment's pure parts: where a message lives in Graph, and what the bytes say they are."""

from __future__ import annotations

from agentseat.runtime.inbox import Event
from agentseat.tools.downloads import image_type, message_path


def _channel(thread: str = "") -> Event:
    return Event.channel(team_id="t-1", channel_id="19:abc@thread.tacv2", message_id="m2", thread_id=thread,
                         sender_id="u", sender_upn="", sender_name="", trust="colleague", text="",
                         created_at="2026-12-06T10:00:00Z", source="poll")


def test_chat_posts_and_replies_have_their_graph_paths() -> None:
    assert message_path("19:a_b@unq.gbl.spaces", "m/1") == "/chats/19:a_b@unq.gbl.spaces/messages/m%2F1"
    assert message_path("19:abc@thread.tacv2", "m2", _channel()) == (
        "/teams/t-1/channels/19:abc@thread.tacv2/messages/m2")
    assert message_path("19:abc@thread.tacv2", "m2", _channel("m1")) == (
        "/teams/t-1/channels/19:abc@thread.tacv2/messages/m1/replies/m2")


def test_the_bytes_decide_the_image_type() -> None:
    assert image_type(b"\x89PNG\r\n\x1a\n...") == "image/png"
    assert image_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert image_type(b"GIF89a") == "image/gif"
    assert image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert image_type(b"<svg onload=alert(1)>") is None and image_type(b"") is None
