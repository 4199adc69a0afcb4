"""How often poll mode may read Teams, and what `status` says while it does.

Microsoft asks apps not to poll Teams: "If your app polls to see whether a resource has
changed, you can only do that once per day ... If you need to hear about changes more
frequently than that, you should create a subscription" (Graph, teams-api-overview,
"Polling requirements"; apps that do not comply may be throttled or suspended). Webhooks
are our answer; poll mode stays the answer behind a firewall until Event Hubs delivery
exists (change-notifications-delivery-event-hubs: no public URL needed).

While it polls, it keeps the per-user request rates well inside Graph's documented limits
(throttling-limits, Teams: GET /me/chats 1 request/s per user, GET /chats/{id}/messages 1
per chat, and about 83 % of that sustained): a chat round is one chat-list request when
nothing changed, and the interval has a floor of `CHAT_POLL_FLOOR_SECONDS`, so a round
uses at most a fifth of the per-user chat-list budget and leaves the rest to the agent's
own tools. A lower setting is raised to the floor, with a warning that says so. Mail has
a delta API and Outlook's budget (10,000 requests per 10 minutes per mailbox), so its
interval keeps the settings' own minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings

__all__ = ["CHAT_POLL_FLOOR_SECONDS", "POLICY_KEY", "PollIntervals", "intervals", "policy_warning"]

#: Entrabot's own Teams interval; 0.2 requests/s of GET /me/chats against a 1/s per-user limit.
CHAT_POLL_FLOOR_SECONDS = 5.0
#: The tenant warning `status` shows while Teams is polled.
POLICY_KEY = "polling_policy"


@dataclass(frozen=True)
class PollIntervals:
    chat: float
    mail: float
    #: Why the chat interval is not the configured one (None when it is).
    raised: str | None = None


def intervals(settings: Settings) -> PollIntervals:
    """The intervals poll mode uses: the settings', with the chat interval held to its floor."""
    chat = settings.chat_poll_seconds
    if chat >= CHAT_POLL_FLOOR_SECONDS:
        return PollIntervals(chat=chat, mail=settings.mail_poll_seconds)
    raised = (f"AGENTSEAT_CHAT_POLL_SECONDS={chat:g} is below the {CHAT_POLL_FLOOR_SECONDS:g} s floor "
              f"(Microsoft's Teams polling requirements and per-user limits); polling every "
              f"{CHAT_POLL_FLOOR_SECONDS:g} s instead")
    return PollIntervals(chat=CHAT_POLL_FLOOR_SECONDS, mail=settings.mail_poll_seconds, raised=raised)


def policy_warning(chosen: PollIntervals) -> str:
    """What `status` says while Teams is polled: the rule, the rate, and where to go instead."""
    text = (f"polling Teams every {chosen.chat:g} s: Microsoft asks apps not to poll Teams for changes "
            "(Graph teams-api-overview, \"Polling requirements\"); poll mode is the fallback behind a "
            "firewall until Event Hubs delivery exists. Use webhooks where a public URL is possible "
            "(`--mode webhook` with `--tunnel ngrok|static`)")
    return f"{chosen.raised}. {text}" if chosen.raised else text
