"""Which subscription ids the webhook accepts, each with its own clientState.

Every subscription gets a fresh random clientState when it is created, so a
captured POST proves nothing about any other subscription and stops working
once that subscription is replaced. `KnownView` is the id -> (kind, secret)
mapping the notification pipeline screens with: the subscriptions we hold now,
plus, for a short grace, ones we replaced ourselves (a URL move, a rotation),
so change notifications Graph had in flight for them still verify. Lifecycle
events for anything but a held subscription are dropped by the lifecycle gate.

It also reads the one shared secret earlier versions kept in
`state_dir/client_state`, only so their live subscriptions keep verifying
until they are replaced.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from ..graph.subscription import KnownSubscription

#: How long the change notifications of a subscription we replaced still verify.
REPLACED_GRACE_SECONDS = 300.0
LEGACY_CLIENT_STATE_FILE = "client_state"


def new_client_state() -> str:
    """A fresh secret for one subscription: 64 URL-safe characters, within Graph's 128-character limit."""
    return secrets.token_urlsafe(48)


def read_legacy_client_state(state_dir: Path) -> str:
    """The shared secret of versions before per-subscription secrets, or "" if there is none."""
    path = state_dir / LEGACY_CLIENT_STATE_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def remove_legacy_client_state(state_dir: Path) -> bool:
    """Delete the shared secret file once no subscription uses it; True if one was removed."""
    try:
        (state_dir / LEGACY_CLIENT_STATE_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


class KnownView(Mapping[str, KnownSubscription]):
    """Held subscriptions, plus replaced ones for `grace` seconds; a live view the pipeline reads."""

    def __init__(self, *, grace: float = REPLACED_GRACE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._grace = grace
        self._clock = clock
        self._current: dict[str, KnownSubscription] = {}
        self._retired: dict[str, tuple[KnownSubscription, float]] = {}

    def hold(self, subscriptions: Iterable[KnownSubscription]) -> None:
        """Replace the set of held subscriptions."""
        self._current = {s.id: s for s in subscriptions if s.id and s.client_state}
        now = self._clock()
        self._retired = {k: v for k, v in self._retired.items() if v[1] > now and k not in self._current}

    def retire(self, known: KnownSubscription, *, grace: bool) -> None:
        """Stop holding `known`; with `grace`, its change notifications still verify for a while."""
        self._current.pop(known.id, None)
        if grace and self._grace > 0 and known.client_state:
            self._retired[known.id] = (known, self._clock() + self._grace)
        else:
            self._retired.pop(known.id, None)

    def holds(self, known: KnownSubscription) -> bool:
        """True if `known` is a subscription we hold now (not one in its grace)."""
        current = self._current.get(known.id)
        return current is not None and current.kind == known.kind

    def retired_secret(self, subscription_id: str) -> str:
        entry = self._retired.get(subscription_id)
        return entry[0].client_state if entry is not None and entry[1] > self._clock() else ""

    def __getitem__(self, subscription_id: str) -> KnownSubscription:
        known = self._current.get(subscription_id)
        if known is not None:
            return known
        entry = self._retired.get(subscription_id)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        raise KeyError(subscription_id)

    def _live_ids(self) -> list[str]:
        now = self._clock()
        return [*self._current, *(k for k, v in self._retired.items() if v[1] > now and k not in self._current)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._live_ids())

    def __len__(self) -> int:
        return len(self._live_ids())

    def __repr__(self) -> str:  # ids only: the secrets never reach a log line or a traceback
        return f"KnownView(held={sorted(self._current)}, retired={sorted(self._retired)})"


class KnownUnion(Mapping[str, KnownSubscription]):
    """Several `KnownView`s read as one (chats and mail beside the channel subscriptions)."""

    def __init__(self, *views: Mapping[str, KnownSubscription]) -> None:
        self._views = views

    def __getitem__(self, subscription_id: str) -> KnownSubscription:
        for view in self._views:
            if subscription_id in view:
                return view[subscription_id]
        raise KeyError(subscription_id)

    def __iter__(self) -> Iterator[str]:
        return iter([sid for view in self._views for sid in view])

    def __len__(self) -> int:
        return sum(len(view) for view in self._views)

    def __repr__(self) -> str:
        return f"KnownUnion({', '.join(repr(v) for v in self._views)})"
