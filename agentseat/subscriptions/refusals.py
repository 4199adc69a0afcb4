"""Why Graph refused a subscription, and when to ask again.

Three kinds of refusal need three answers:

- a lifetime above the tenant's maximum names that maximum ("Subscription
  expiration can only be 60 minutes in the future."): read it and ask again at
  once with it. The subscription resource page says chatMessage subscriptions
  last 4,320 minutes; older pages, the Teams API overview and entrabot's tenants
  say 60, so a tenant may do either;
- the Agent User's mailbox or Teams presence is not provisioned yet (licensing
  starts it and it can take hours, Entra "agent users"): readiness.py waits for
  it and asks the manager to try again when it is there;
- anything else (a missing permission, a quota, a webhook Graph could not
  validate, a 5xx): asked again on a backoff, never given up for good.

No I/O here: functions of a `GraphError` and of a count.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from ..errors import GraphError
from ..graph.unprovisioned import Part, unprovisioned_part
from .specs import SubscriptionSpec
from .state import SubscriptionState

__all__ = ["Part"]  # re-exported: readiness and the manager name the part

#: Graph's own words (observed on real tenants; the sandbox's rules.py answers the same).
_MAX_LIFETIME = re.compile(r"expiration can only be (\d+) minutes in the future", re.IGNORECASE)
#: A refused kind is asked again after 30 s, then 60, 120, ... never less often than hourly.
BACKOFF_FIRST_SECONDS = 30.0
BACKOFF_MAX_SECONDS = 3600.0
#: A lifetime read from Graph's refusal is asked for with this much slack (clock skew).
LIFETIME_SLACK_SECONDS = 60
#: Tenant facts: the longest lifetime Graph accepts, per kind, once it refused a longer one.
LIFETIME_FACTS = {"teams": "chat_subscription_max_minutes", "mail": "mail_subscription_max_minutes"}



def max_minutes(exc: GraphError) -> int | None:
    """The longest lifetime Graph says it accepts, if this refusal names one."""
    if exc.status != 400:
        return None
    match = _MAX_LIFETIME.search(exc.message or "")
    return int(match.group(1)) if match else None


def within(spec: SubscriptionSpec, limit: Any) -> SubscriptionSpec:
    """`spec` asking for at most `limit` minutes (with slack), or `spec` itself when `limit`
    is not a whole number of minutes below what it asks for."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit < spec.minutes:
        return spec
    return replace(spec, minutes=limit, slack_seconds=LIFETIME_SLACK_SECONDS if limit > 1 else 0)


def not_provisioned(exc: GraphError) -> Part | None:
    """`mailbox` or `teams` when Graph answered that the Agent User's part is not provisioned yet."""
    return unprovisioned_part(exc.status, exc.code, exc.message)


def backoff_seconds(attempts: int, *, first: float = BACKOFF_FIRST_SECONDS,
                    most: float = BACKOFF_MAX_SECONDS) -> float:
    """How long to wait after the `attempts`-th refusal in a row (1 -> `first`, doubling, capped)."""
    return min(most, first * 2 ** max(0, min(attempts - 1, 30)))


def explain(exc: GraphError) -> str:
    """In words, why Graph refused a subscription, for `status` and `doctor`."""
    part = not_provisioned(exc)
    if part == "mailbox":
        return (f"the Agent User's mailbox is not provisioned yet ({exc.status} {exc.code}); licensing starts it "
                "and it can take hours")
    if part == "teams":
        return (f"the Agent User's Teams presence is not provisioned yet ({exc.status} {exc.code}); licensing "
                "starts it and it can take hours")
    if exc.status == 403:
        return f"Graph refused the subscription (403 {exc.code}): the agent lacks the permission or a quota is full"
    if exc.status == 400 and exc.code in ("ValidationError", "InvalidRequest") and max_minutes(exc) is None:
        return "Graph could not validate the webhook URL: the tunnel does not reach this runtime"
    if exc.status == 409:
        return "a subscription for this resource already exists and could not be taken over"
    return f"Graph refused the subscription ({exc.status} {exc.code}): {exc.message}"


def refusal_warning(kind: str, state: SubscriptionState) -> str:
    """The tenant warning `status` shows for a refused kind: why, and when it is asked again."""
    at = datetime.fromtimestamp(state.retry_at, UTC).strftime("%H:%M:%S UTC")
    return f"{kind} subscription refused: {state.error}; retrying at {at} (attempt {state.refusals})"
