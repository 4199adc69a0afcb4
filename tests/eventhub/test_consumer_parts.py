"""The consumer's pure parts: an event's body as bytes, and Graph's validation message told apart."""

from __future__ import annotations

import json

from azure.eventhub import EventData

from agentseat.eventhub.consumer import event_body, is_validation_message

VALIDATION = {"value": [{"subscriptionId": "NA", "subscriptionExpirationDateTime": "NA", "clientState": "NA",
                         "changeType": "Validation: Testing client application reachability for subscription "
                                       "Request-Id: 0000", "resource": "NA"}]}


def test_an_event_body_is_the_bytes_graph_sent() -> None:
    body = json.dumps({"value": []}).encode()
    assert event_body(EventData(body)) == body
    assert event_body(EventData("text body")) == b"text body"


def test_graph_validation_message_is_recognised_and_a_notification_is_not() -> None:
    assert is_validation_message(json.dumps(VALIDATION).encode())
    real = {"value": [{"subscriptionId": "3f1c", "clientState": "NA", "changeType": "created", "resource": "x"}]}
    assert not is_validation_message(json.dumps(real).encode())
    two = {"value": VALIDATION["value"] * 2}  # only Graph's one-item form is ignored
    assert not is_validation_message(json.dumps(two).encode())
    assert not is_validation_message(b'{"value": "NA"')  # unreadable: left to the pipeline to drop
