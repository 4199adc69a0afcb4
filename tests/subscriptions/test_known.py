"""The id -> clientState view the webhook screens with: held, replaced (for a grace), forgotten."""

from __future__ import annotations

from agentseat.graph.subscription import KnownSubscription
from agentseat.subscriptions.known import KnownView, new_client_state

A = KnownSubscription("a", "teams", "secret-a")
B = KnownSubscription("b", "teams", "secret-b")


def test_a_replaced_subscription_verifies_only_for_its_grace_and_is_never_held() -> None:
    now = [0.0]
    view = KnownView(grace=300.0, clock=lambda: now[0])
    view.hold([A])
    view.retire(A, grace=True)
    view.hold([B])
    assert view["a"].client_state == "secret-a" and not view.holds(A)  # change notifications only
    assert view.holds(B) and sorted(view) == ["a", "b"]
    now[0] = 300.0
    assert "a" not in view and sorted(view) == ["b"] and len(view) == 1


def test_a_removed_subscription_is_forgotten_at_once() -> None:
    view = KnownView(grace=300.0)
    view.hold([A])
    view.retire(A, grace=False)
    assert "a" not in view and not view.holds(A)


def test_secrets_are_fresh_and_stay_out_of_repr() -> None:
    view = KnownView()
    view.hold([A, KnownSubscription("m", "mail", "secret-m")])
    assert "secret" not in repr(view) and "secret" not in repr(A)
    assert len({new_client_state() for _ in range(100)}) == 100
    assert all(len(new_client_state()) <= 128 for _ in range(10))
