"""A Graph subscription as the agent holds it: the contract between the code that
creates subscriptions (subscriptions/) and the code that screens their notifications
(runtime/pipeline.py), kept here so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["teams", "mail"]


@dataclass(frozen=True, slots=True)
class KnownSubscription:
    """A subscription we created. `client_state` is a secret, so it stays out of repr."""

    id: str
    kind: Kind
    client_state: str = field(repr=False)
    #: Created with includeResourceData: every genuine item carries encryptedContent.
    rich: bool = True


#: A channel subscription's kind is `channel:{team id}:{channel id}` (one per joined channel,
#: subscriptions/channels.py); its notifications name a channel message to read.
CHANNEL_KIND_PREFIX = "channel:"


def is_channel_kind(kind: str) -> bool:
    return kind.startswith(CHANNEL_KIND_PREFIX)
