"""Inbound attachments: what a chatMessage carries, as events, pushes and the read tools list it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from agentseat.attachments.inbound import parse
from agentseat.attachments.names import MAX_NAME, meta_pairs, safe_name
from agentseat.runtime.normalize import TrustPolicy, chat_change_event, chat_message_event
from agentseat.tools.channel import envelope

GRAPH = "https://graph.microsoft.com/v1.0"
CHAT = "19:abc_def@unq.gbl.spaces"
HC = "aWQ9eF8wLWN1cy1kMTEtYTU4NjVmNTQ3NjcyN2EzNmI2YmY3NTIxYTk3ZmRkNzUsdHlwZT0xLHVybD0="
FILE_ID = "153fa47d-18c9-4179-be08-9879815a9f90"
CARD = json.dumps({"type": "AdaptiveCard", "version": "1.5", "body": []})


def _message(content: str, attachments: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "1700", "chatId": CHAT, "messageType": "message", "createdDateTime": "2026-12-06T10:00:00Z",
            "from": {"user": {"id": "u1", "displayName": "Grace"}},
            "body": {"contentType": "html", "content": content}, "attachments": attachments or [], **extra}


def _img(hc: str, alt: str | None = None) -> str:
    alt_attr = f' alt="{alt}"' if alt is not None else ""
    return f'<img src="{GRAPH}/chats/{CHAT}/messages/1700/hostedContents/{hc}/$value"{alt_attr} width="200">'


def test_a_pasted_screenshot_a_file_and_a_card_are_listed_and_a_quote_is_not() -> None:
    body = (f"<p>see {_img(HC)}</p><attachment id=\"{FILE_ID}\"></attachment>"
            f"<attachment id=\"1699\"></attachment><attachment id=\"card1\"></attachment>")
    message = _message(body, [
        {"id": FILE_ID, "contentType": "reference", "name": "Q4 report.pdf",
         "contentUrl": "https://contoso-my.sharepoint.com/personal/ada/Documents/report.pdf"},
        {"id": "1699", "contentType": "messageReference", "content": "{\"messageId\":\"1699\"}"},
        {"id": "card1", "contentType": "application/vnd.microsoft.card.adaptive", "content": CARD},
    ])
    assert [a.listing() for a in parse(message)] == [
        {"id": HC, "name": "image-1.png", "type": "image", "size": None},
        {"id": FILE_ID, "name": "Q4 report.pdf", "type": "file", "size": None},
        {"id": "card1", "name": "card.json", "type": "card", "size": len(CARD)},
    ]


def test_image_names_come_from_a_file_like_alt_and_repeats_are_one() -> None:
    message = _message(_img(HC, "shot &amp; more.PNG") + _img(HC) + _img("second", "image"))
    assert [(a.id, a.name) for a in parse(message)] == [(HC, "shot & more.PNG"), ("second", "image-2.png")]


@pytest.mark.parametrize("src", ["https://evil.test/pic.png", f"{GRAPH}/chats/x/messages/1/hostedContents//$value",
                                 f"{GRAPH}/chats/x/messages/1/hostedContents/a,b:c/$value"])
def test_images_that_are_not_hosted_contents_are_not_listed(src: str) -> None:
    assert parse(_message(f'<img src="{src}">')) == []


def test_a_text_body_has_no_images() -> None:
    message = _message(_img(HC))
    message["body"]["contentType"] = "text"
    assert parse(message) == []


def test_events_carry_the_attachments_from_every_normaliser() -> None:
    message = _message(f"{_img(HC)} look", lastEditedDateTime="2026-12-06T10:05:00Z")
    policy = TrustPolicy(own_ids={"agent"})
    new = chat_message_event(message, policy, source="webhook", confirmed=True)
    edit = chat_change_event(message, policy, source="poll", confirmed=True)
    assert new is not None and edit is not None
    assert new.attachment_list() == edit.attachment_list() == [
        {"id": HC, "name": "image-1.png", "type": "image", "size": None}]
    deleted = chat_change_event({**message, "deletedDateTime": "2026-12-06T10:06:00Z"}, policy, source="poll",
                                confirmed=True)
    assert deleted is not None and deleted.attachments == ""


def test_the_push_lists_ids_and_names_in_meta_and_no_path_in_content() -> None:
    message = _message(f"{_img(HC)}<attachment id=\"{FILE_ID}\"></attachment>", [
        {"id": FILE_ID, "contentType": "reference", "name": "../../etc/passwd,x:y <system>.txt",
         "contentUrl": "https://contoso-my.sharepoint.com/personal/ada/Documents/x.txt"}])
    event = chat_message_event(message, TrustPolicy(), source="webhook", confirmed=True)
    assert event is not None
    out = envelope(event)
    meta = out["meta"]
    assert meta["attachment_count"] == "2"
    assert meta["attachments"] == f"{HC}:image-1.png,{FILE_ID}:_.._etc_passwd_x_y _system_.txt"
    pairs = [p.split(":") for p in meta["attachments"].split(",")]
    assert [p[0] for p in pairs] == [HC, FILE_ID] and all(len(p) == 2 for p in pairs)
    assert all(re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", k) and isinstance(v, str) for k, v in meta.items())
    assert "sharepoint" not in out["content"] and "passwd" not in out["content"]
    assert "download_attachment" in out["content"]


def test_a_message_without_attachments_has_no_attachment_meta() -> None:
    event = chat_message_event(_message("hi"), TrustPolicy(), source="webhook", confirmed=True)
    assert event is not None and event.attachments == ""
    assert "attachments" not in envelope(event)["meta"] and "attachment_count" not in envelope(event)["meta"]


@pytest.mark.parametrize("raw, expected", [
    ("report.pdf", "report.pdf"), ("a/b\\c.txt", "a_b_c.txt"), ("..", "attachment"), ("...hidden", "hidden"),
    ("x\u202etxt.exe", "x_txt.exe"), ("line\nbreak;[x]", "line_break_x_"), ("", "attachment"), (None, "attachment"),
])
def test_names_are_sanitised(raw: str | None, expected: str) -> None:
    assert safe_name(raw) == expected


def test_long_names_are_cut_keeping_the_extension() -> None:
    name = safe_name("a" * 300 + ".xlsx")
    assert len(name) <= MAX_NAME and name.endswith("~.xlsx")


def test_meta_pairs_cap_the_list() -> None:
    pairs = meta_pairs([{"id": f"id{n}", "name": f"f{n}.txt"} for n in range(30)])
    assert pairs.count(",") == 19 and pairs.startswith("id0:f0.txt,")


def test_a_pasted_image_reads_as_image_in_the_text_without_its_url() -> None:
    event = chat_message_event(_message(f"look {_img(HC)} here"), TrustPolicy(), source="webhook", confirmed=True)
    assert event is not None and event.text == "look [image] here"
