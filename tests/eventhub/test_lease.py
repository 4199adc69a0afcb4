"""The manager lease (eventhub/lease.py) on both checkpoint stores: the SQLite one and the SDK's Blob
store on Azurite. One holder at a time; a silent holder's lease is taken after its expiry; a
holder whose renewal loses is told; a released lease is free at once."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agentseat.eventhub.lease import Lease, LeaseLost

NS, HUB, GROUP = "ns.servicebus.windows.net", "graph", "$Default"


@pytest.fixture
def store(either_store: Any) -> Any:
    return either_store


def lease(store: Any, name: str, expiry: float = 30.0) -> Lease:
    return Lease(store, NS, HUB, GROUP, expiry_seconds=expiry, owner_id=name)


async def test_one_holder_at_a_time_and_renewals_keep_it(store: Any) -> None:
    a, b = lease(store, "a"), lease(store, "b")
    assert await a.try_acquire()
    assert not await b.try_acquire()
    await a.renew()
    assert not await b.try_acquire()
    assert (await a.holder())[0] == "a"  # type: ignore[index]


async def test_a_silent_holder_loses_the_lease_after_its_expiry(store: Any) -> None:
    # An expiry long enough that b's first try lands inside it on a loaded machine (Azurite answers slowly).
    a, b = lease(store, "a", expiry=4.0), lease(store, "b", expiry=4.0)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    await anyio.sleep(4.2)  # a stays silent past the expiry
    assert await b.try_acquire()
    with pytest.raises(LeaseLost):
        await a.renew()  # its etag is stale: it learns it lost
    assert (await b.holder())[0] == "b"  # type: ignore[index]


async def test_a_released_lease_is_free_at_once(store: Any) -> None:
    a, b = lease(store, "a"), lease(store, "b")
    assert await a.try_acquire()
    await a.release()
    assert await b.try_acquire()


async def test_hold_waits_then_holds_and_releases_when_cancelled(store: Any) -> None:
    a, b = lease(store, "a", expiry=3.0), lease(store, "b", expiry=3.0)
    async with anyio.create_task_group() as tg:
        await tg.start(a.hold)
        assert not await b.try_acquire()
        tg.cancel_scope.cancel()
    assert await b.try_acquire()  # released on cancel: no wait for the expiry


async def test_the_lease_is_invisible_to_the_sdk_partition_ownership(store: Any) -> None:
    assert await lease(store, "a").try_acquire()
    assert list(await store.list_ownership(NS, HUB, GROUP)) == []
