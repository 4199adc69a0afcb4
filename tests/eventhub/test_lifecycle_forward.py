"""Lifecycle forwarding records (eventhub/forward.py) on both checkpoint stores: the SQLite one and the
SDK's Blob store on Azurite. A follower's claim reaches the holder's relay once; a repeat is seen again;
a new holder handles what the last one left and nothing it handled; a subscription nobody holds is not
acted on; the records are invisible to the SDK's load balancing and to the manager lease."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agentseat.eventhub.forward import LifecycleForwarder, LifecycleRecords, record_id
from agentseat.eventhub.lease import Lease
from agentseat.graph.subscription import KnownSubscription
from agentseat.subscriptions.lifecycle import LifecycleCounters

NS, HUB, GROUP = "ns.servicebus.windows.net", "graph", "$Default"
TEAMS = KnownSubscription("5d2f4c1e-0000-4000-8000-00000000000a", "teams", "secret-a")
MAIL = KnownSubscription("5d2f4c1e-0000-4000-8000-00000000000b", "mail", "secret-b")
CHANNEL = KnownSubscription("5d2f4c1e-0000-4000-8000-00000000000c", "channel:19:AbC@thread.tacv2:19:Def@thread.skype",
                            "secret-c")


@pytest.fixture
def store(either_store: Any) -> Any:
    return either_store


def records(store: Any) -> LifecycleRecords:
    return LifecycleRecords(store, NS, HUB, GROUP)


class Gate:
    """The holder's side of `act`: what its lifecycle gate was handed."""

    def __init__(self) -> None:
        self.offered: list[tuple[str, str]] = []

    def __call__(self, known: KnownSubscription, event: str) -> None:
        self.offered.append((known.id, event))


HELD = {s.id: s for s in (TEAMS, MAIL, CHANNEL)}


async def test_a_forwarded_event_reaches_the_holder_once_and_a_repeat_again(store: Any) -> None:
    follower, holder, gate = records(store), records(store), Gate()
    assert await holder.take(HELD, gate) == 0  # nothing forwarded yet
    assert await follower.forward(TEAMS, "reauthorizationRequired")
    assert await follower.forward(MAIL, "missed")
    assert await holder.take(HELD, gate) == 2
    assert sorted(gate.offered) == sorted([(TEAMS.id, "reauthorizationRequired"), (MAIL.id, "missed")])
    assert await holder.take(HELD, gate) == 0  # handled: not handed again
    assert await follower.forward(TEAMS, "reauthorizationRequired")  # it happened again
    assert await holder.take(HELD, gate) == 1
    assert gate.offered[-1] == (TEAMS.id, "reauthorizationRequired")


async def test_each_event_and_kind_is_its_own_record_and_channel_kinds_fit_a_blob_name(store: Any) -> None:
    follower, holder, gate = records(store), records(store), Gate()
    for event in ("subscriptionRemoved", "reauthorizationRequired", "missed"):
        await follower.forward(CHANNEL, event)
    await follower.forward(TEAMS, "subscriptionRemoved")
    assert await holder.take(HELD, gate) == 4
    assert sorted(gate.offered) == sorted([(CHANNEL.id, "subscriptionRemoved"), (CHANNEL.id, "reauthorizationRequired"),
                                           (CHANNEL.id, "missed"), (TEAMS.id, "subscriptionRemoved")])
    assert record_id(CHANNEL.kind, "missed") == record_id(CHANNEL.kind, "missed").lower()


async def test_a_new_holder_handles_what_the_last_left_and_nothing_it_handled(store: Any) -> None:
    follower, first, gate = records(store), records(store), Gate()
    await follower.forward(TEAMS, "subscriptionRemoved")
    assert await first.take(HELD, gate) == 1
    await follower.forward(MAIL, "missed")  # the first holder stops before its next renewal
    second, later = records(store), Gate()  # another machine takes the lease: markers are in the store
    assert await second.take(HELD, later) == 1
    assert later.offered == [(MAIL.id, "missed")]


async def test_a_subscription_the_holder_does_not_hold_is_not_acted_on_and_not_retried(store: Any) -> None:
    follower, holder, gate = records(store), records(store), Gate()
    stale = KnownSubscription("0f0f0f0f-0000-4000-8000-000000000000", "teams", "old")
    await follower.forward(stale, "reauthorizationRequired")
    assert await holder.take(HELD, gate) == 0
    assert gate.offered == []
    await follower.forward(TEAMS, "reauthorizationRequired")  # the same record, now naming a held one
    assert await holder.take(HELD, gate) == 1
    assert gate.offered == [(TEAMS.id, "reauthorizationRequired")]


async def test_the_records_are_invisible_to_the_sdk_and_the_lease(store: Any) -> None:
    await records(store).forward(TEAMS, "missed")
    await records(store).take(HELD, Gate())
    assert list(await store.list_ownership(NS, HUB, GROUP)) == []  # the SDK's partition ownership
    assert await Lease(store, NS, HUB, GROUP, expiry_seconds=30.0).holder() is None


async def test_the_forwarder_coalesces_a_flood_into_few_store_writes(store: Any) -> None:
    counters = LifecycleCounters()
    forwarder = LifecycleForwarder(records(store), counters, spacing=0.2)
    holder, gate = records(store), Gate()
    async with anyio.create_task_group() as tg:
        tg.start_soon(forwarder.run)
        for _ in range(50):
            forwarder.offer(TEAMS, "reauthorizationRequired")
        forwarder.offer(TEAMS, "notAnEvent")
        with anyio.fail_after(30):  # a safety bound, not a measurement
            while not forwarder.idle():
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    written = counters.actions["forwarded"] + counters.actions["forward_merged"]
    assert 1 <= written <= 2  # one run, and at most one pending behind it
    assert counters.dropped["forward_coalesced"] == 50 - written
    assert counters.received["reauthorizationRequired"] == 50 and counters.dropped["unknown_event"] == 1
    assert await holder.take(HELD, gate) == 1
    assert gate.offered == [(TEAMS.id, "reauthorizationRequired")]
