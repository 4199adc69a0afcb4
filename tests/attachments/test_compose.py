"""How files join an outgoing chatMessage (tools/teams_files.Outgoing.apply): the shapes of
chat-post-messages' "Send message with inline image" and "Send a message with file attachment"."""

from __future__ import annotations

from agentseat.tools.teams_files import Outgoing


def test_a_text_body_becomes_html_with_the_images_and_file_markers_after_it() -> None:
    out = Outgoing(html='<br><img src="../hostedContents/1/$value" alt="a.png"><attachment id="G1"></attachment>',
                   hosted=[{"@microsoft.graph.temporaryId": "1", "contentType": "image/png", "contentBytes": "AA=="}],
                   attachments=[{"id": "G1", "contentType": "reference", "contentUrl": "https://x", "name": "r.pdf"}])
    payload = out.apply({"body": {"contentType": "text", "content": "a < b\nsee"}})
    assert payload["body"] == {"contentType": "html", "content": "a &lt; b<br>see" + out.html}
    assert payload["hostedContents"] == out.hosted and payload["attachments"] == out.attachments


def test_an_html_body_and_its_mentions_are_kept() -> None:
    out = Outgoing(html='<attachment id="G1"></attachment>',
                   attachments=[{"id": "G1", "contentType": "reference", "contentUrl": "https://x", "name": "r.pdf"}])
    mentions = [{"id": 0, "mentionText": "Ada"}]
    payload = out.apply({"body": {"contentType": "html", "content": '<at id="0">Ada</at> here'}, "mentions": mentions})
    assert payload["body"]["content"] == '<at id="0">Ada</at> here<attachment id="G1"></attachment>'
    assert payload["mentions"] == mentions and "hostedContents" not in payload
