"""The notification pipeline, step by step and as a whole (no HTTP: see test_webhook.py).

Notifications are genuine: resource data encrypted for a real certificate,
validation tokens signed by a key that a loopback JWKS server publishes.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
import structlog

from agentseat.graph.models import ChangeNotificationCollection
from agentseat.runtime import pipeline as pipeline_module
from agentseat.runtime.crypto import encrypt_content
from agentseat.runtime.pipeline import (
    Drop,
    DropLog,
    Item,
    KnownSubscription,
    check_tokens,
    decrypt_items,
    parse_collection,
    plan_actions,
    screen_items,
)
from agentseat.runtime.intake import Intake
from agentseat.runtime.intake_store import PendingStore
from agentseat.runtime.verify import VerificationError

from ._notify import (
    AGENT_ID,
    BLUEPRINT,
    CERT_ID,
    CHAT_ID,
    CLIENT_STATE,
    COLLEAGUE_ID,
    MAIL_CLIENT_STATE,
    MAIL_SUB,
    OTHER_TENANT,
    TEAMS_SUB,
    TENANT,
    Keys,
    World,
    body,
    chat_message,
    change_item,
    lifecycle_item,
    mail_partial,
    make_certificate,
    new_id,
    rich_chat_item,
    rich_mail_item,
)


def collection(items: list[dict[str, Any]], tokens: list[str] | None = None) -> ChangeNotificationCollection:
    return parse_collection(body(items, tokens))


def screened(world: World, items: list[dict[str, Any]], tokens: list[str] | None = None,
             *, lifecycle_endpoint: bool = False) -> tuple[ChangeNotificationCollection, list[Item], list[Drop]]:
    parsed = collection(items, tokens)
    kept, drops = screen_items(parsed, world.subscriptions, tenant_id=TENANT, lifecycle_endpoint=lifecycle_endpoint)
    return parsed, kept, drops


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


# --- parse ----------------------------------------------------------------------------------


def test_graph_timestamps_with_seven_fractional_digits_parse(keys: Keys) -> None:
    parsed = collection([rich_chat_item(keys)], ["t"])
    assert parsed.value[0].subscription_expiration_date_time.microsecond == 909756
    assert parsed.validation_tokens == ["t"]


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"null", b"[]", b'{"value": 1}', b'{"value": [{}]}',
                                 b'{"value": []} trailing', b"[" * 10_000])
def test_bad_bodies_are_malformed(raw: bytes) -> None:
    with pytest.raises(VerificationError) as caught:
        parse_collection(raw)
    assert caught.value.reason == "malformed"


# --- screen -----------------------------------------------------------------------------------


def test_screen_keeps_ours_and_names_each_other_reason(world: World) -> None:
    stranger = new_id()
    items = [change_item(), change_item(client_state="forged"), change_item(subscription=stranger),
             change_item(tenant=OTHER_TENANT), change_item(subscription="not-a-guid"),
             {**change_item(), "lifecycleEvent": "missed"}]
    _, kept, drops = screened(world, items)
    assert [i.subscription.id for i in kept] == [TEAMS_SUB]
    assert [(d.reason, d.subscription, d.claimed) for d in drops] == [
        ("client_state_mismatch", TEAMS_SUB, None), ("unknown_subscription", "unknown", stranger),
        ("wrong_tenant", TEAMS_SUB, None), ("unknown_subscription", "unknown", None), ("malformed", TEAMS_SUB, None)]


def test_subscriptions_are_a_live_view(world: World) -> None:
    world.subscriptions.pop(TEAMS_SUB)
    assert [d.reason for d in screened(world, [change_item()])[2]] == ["unknown_subscription"]
    world.subscriptions[TEAMS_SUB] = KnownSubscription(TEAMS_SUB, "teams", "rotated")
    assert [d.reason for d in screened(world, [change_item()])[2]] == ["client_state_mismatch"]


def test_unconfigured_tenant_accepts_nothing(world: World) -> None:
    parsed = collection([change_item()])
    kept, drops = screen_items(parsed, world.subscriptions, tenant_id="", lifecycle_endpoint=False)
    assert kept == [] and [d.reason for d in drops] == ["wrong_tenant"]


def test_lifecycle_url_takes_only_lifecycle_events(world: World) -> None:
    _, kept, drops = screened(world, [change_item(), lifecycle_item()], lifecycle_endpoint=True)
    assert [i.notification.lifecycle_event for i in kept] == ["reauthorizationRequired"]
    assert [d.reason for d in drops] == ["wrong_endpoint"]
    _, kept, _ = screened(world, [change_item(), lifecycle_item()], lifecycle_endpoint=False)
    assert len(kept) == 2


def test_known_subscription_repr_hides_the_client_state() -> None:
    assert CLIENT_STATE not in repr(KnownSubscription(TEAMS_SUB, "teams", CLIENT_STATE))


# --- tokens -----------------------------------------------------------------------------------


async def test_forged_client_state_never_makes_us_fetch_keys(world: World) -> None:
    result = await world.pipeline.process(body([rich_chat_item(world.keys, client_state="x")], ["junk"]),
                                          lifecycle_endpoint=False)
    assert result.dropped == {"client_state_mismatch": 1}
    assert world.peer.hits == 0


async def test_basic_items_need_no_tokens_and_rich_ones_without_them_fall_back_to_graph(world: World) -> None:
    parsed, items, _ = screened(world, [change_item(), rich_chat_item(world.keys)])
    check = await check_tokens(parsed, items, jwks=world.jwks, settings=world.settings)
    # Not dropped (issue 11): `validationTokens` is optional, so the rich item's message is read from Graph.
    assert [(i.rich, i.fallback) for i in check.items] == [(False, None), (True, "token_missing_tokens")]
    assert check.drops == [] and not check.retry
    assert check.report is not None and check.report.seen == {"audience": "missing"}
    parsed, items, _ = screened(world, [change_item(), rich_chat_item(world.keys)], [world.token()])
    check = await check_tokens(parsed, items, jwks=world.jwks, settings=world.settings)
    assert [i.fallback for i in check.items] == [None, None] and check.drops == [] and not check.retry
    assert check.report is not None and check.report.reason is None
    assert check.report.seen is not None and check.report.seen["audience"] == "agent_identity"


async def test_one_bad_token_sends_every_rich_item_to_graph_and_drops_lifecycle_items(world: World) -> None:
    parsed, items, _ = screened(world, [rich_chat_item(world.keys), lifecycle_item(), change_item()],
                                [world.token(), world.token(azp=new_id())])
    check = await check_tokens(parsed, items, jwks=world.jwks, settings=world.settings)
    assert [(i.rich, i.fallback) for i in check.items] == [(True, "token_bad_caller"), (False, None)]
    assert [d.reason for d in check.drops] == ["token_bad_caller"]  # the lifecycle item: nothing to fetch


async def test_blueprint_audience_falls_back_but_keeps_lifecycle_events_for_the_gate(world: World) -> None:
    parsed, items, _ = screened(world, [rich_chat_item(world.keys), lifecycle_item()],
                                [world.token(aud=BLUEPRINT)])
    check = await check_tokens(parsed, items, jwks=world.jwks, settings=world.settings)
    assert [i.fallback for i in check.items] == ["token_blueprint_audience", None]
    assert check.drops == [] and not check.retry
    assert check.report is not None and check.report.seen is not None
    assert check.report.seen["audience"] == "blueprint" and check.report.seen["aud"] == BLUEPRINT


async def test_unconfigured_audience_fails_closed(world: World) -> None:
    world.settings.agent_id = ""
    parsed, items, _ = screened(world, [rich_chat_item(world.keys)], [world.token(aud="")])
    check = await check_tokens(parsed, items, jwks=world.jwks, settings=world.settings)
    assert [i.fallback for i in check.items] == ["token_not_configured"]  # never trusted, read from Graph


async def test_unknown_signing_key_sends_change_items_to_graph(world: World) -> None:
    # Before issue 11 the whole POST was deferred (5xx); a read from Graph needs no key at all.
    token = world.token(kid="tomorrow")
    result = await world.pipeline.process(body([rich_chat_item(world.keys)], [token]), lifecycle_endpoint=False)
    assert not result.retry and result.dropped == {} and result.fallbacks == 1
    assert world.calls.chat == [(CHAT_ID, "1612289765949")] and world.inbox.count() == 0


async def test_unknown_signing_key_defers_a_lifecycle_post(world: World) -> None:
    token = world.token(kid="tomorrow")
    result = await world.pipeline.process(body([lifecycle_item()], [token]), lifecycle_endpoint=True)
    assert result.retry and result.dropped == {}
    assert world.calls.lifecycle == []


# --- decrypt ----------------------------------------------------------------------------------


def test_decrypt_attaches_the_resource_or_names_the_failure(world: World) -> None:
    other = make_certificate(world.keys.evil)
    not_json = change_item(encrypted=encrypt_content(b"\xff not json", world.keys.certificate, CERT_ID))
    a_list = change_item(encrypted=encrypt_content(b"[1, 2]", world.keys.certificate, CERT_ID))
    stranger = change_item(encrypted={**encrypt_content(b"{}", other, "other-cert")})
    _, items, _ = screened(world, [rich_chat_item(world.keys), not_json, a_list, stranger, change_item()])
    kept, drops = decrypt_items(items, world.keyring)
    assert [i.resource["id"] if i.resource else None for i in kept] == ["1612289765949", None]
    assert [d.reason for d in drops] == ["decrypt_not_json", "decrypt_not_json", "decrypt_unknown_certificate"]


async def test_a_post_decrypts_plans_and_stores_in_one_worker_thread_call(world: World,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(getattr(func, "func", func), "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    await world.jwks.get_key("k1")  # the JWKS fetch is not what this test counts
    monkeypatch.setattr(pipeline_module.anyio.to_thread, "run_sync", counting)
    items = [rich_chat_item(world.keys, chat_message(str(i))) for i in range(10)]
    result = await world.pipeline.process(body(items, [world.token()]), lifecycle_endpoint=False)
    assert result.stored == 10 and len(world.inbox.read(0)) == 10
    assert calls == ["_run_all"]  # decrypt, plan and the one SQLite transaction: one hop for the POST
    assert world.inbox.appends == 1


async def test_with_the_intake_as_store_the_post_still_takes_one_worker_thread_call(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    intake = Intake(world.inbox, tmp_path / "intake.db", policy=world.policy)
    world.replace_pipeline(store=intake)
    calls: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(getattr(func, "func", func), "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    await world.jwks.get_key("k1")
    monkeypatch.setattr(pipeline_module.anyio.to_thread, "run_sync", counting)
    items = [rich_chat_item(world.keys, chat_message("c1", sender_id=COLLEAGUE_ID)),
             rich_chat_item(world.keys, chat_message("s1"))]  # the sponsor's claim waits for Graph's word
    result = await world.pipeline.process(body(items, [world.token()]), lifecycle_endpoint=False)
    assert calls == ["_run_all"]
    assert result.stored == 1 and [e.message_id for e in world.inbox.read(0)] == ["c1"]
    assert [e.message_id for _, _, e in PendingStore(tmp_path / "intake.db").oldest()] == ["s1"]
    assert (intake.counters["stored"], intake.counters["pending"]) == (1, 1)
    intake.close()


# --- plan -------------------------------------------------------------------------------------


def _plan(world: World, items: list[dict[str, Any]]) -> Any:
    _, kept, _ = screened(world, items)
    kept, _ = decrypt_items(kept, world.keyring)
    return plan_actions(kept, world.policy)


def test_plan_skips_what_is_not_a_new_message(world: World) -> None:
    items = [
        rich_chat_item(world.keys, chat_message("1", messageType="systemEventMessage")),
        rich_chat_item(world.keys, chat_message("2", sender_id=AGENT_ID)),
        rich_chat_item(world.keys, chat_message("3", deletedDateTime="2026-02-02T18:00:00Z")),
        rich_chat_item(world.keys, chat_message("4"), change_type="updated"),
        rich_chat_item(world.keys, chat_message("5")),
    ]
    plan = _plan(world, items)
    assert [e.message_id for e in plan.events] == ["5"]
    assert plan.ignored == 4 and plan.drops == []


def test_plan_drops_a_chat_message_that_cannot_become_an_event(world: World) -> None:
    plan = _plan(world, [rich_chat_item(world.keys, chat_message("1", createdDateTime="yesterday")),
                         rich_chat_item(world.keys, chat_message("2", **{"from": "someone"}))])
    assert plan.events == [] and [d.reason for d in plan.drops] == ["unusable", "unusable"]


def test_plan_reads_ids_from_every_resource_form(world: World) -> None:
    world.basic_subscriptions()
    items = [change_item(resource=f"chats/{CHAT_ID}/messages/11", resource_id="11"),
             change_item(resource=f"chats('{CHAT_ID}')/messages('12')", resource_id="12"),
             {**change_item(resource=f"chats('{CHAT_ID}')/messages('13')"), "resourceData": None},
             change_item(resource="teams('x')/channels('y')/messages('14')", resource_id="14"),
             {**change_item(subscription=MAIL_SUB, client_state="cs-Mail-0e9d8c7b6a5f4e3d2c1b",
                            resource=f"Users('{AGENT_ID}')/messages('AAMk15')"), "resourceData": None},
             rich_mail_item(world.keys, mail_partial("AAMk16")),
             rich_mail_item(world.keys, mail_partial("AAMk16"))]
    plan = _plan(world, items)
    assert plan.chat_fetches == [(CHAT_ID, "11"), (CHAT_ID, "12"), (CHAT_ID, "13")]
    assert [d.reason for d in plan.drops] == ["malformed"]  # a channel message is not a chat message
    assert list(plan.mail_fetches) == ["AAMk15", "AAMk16"]
    assert plan.mail_fetches["AAMk15"] == {} and plan.mail_fetches["AAMk16"]["subject"] == "Quarterly numbers"


def test_items_without_resource_data_on_a_rich_subscription_are_dropped_not_fetched(world: World) -> None:
    items = [change_item(resource_id="21"), {**change_item(resource_id="22"), "resourceData": None},
             {**change_item(subscription=MAIL_SUB, client_state=MAIL_CLIENT_STATE,
                            resource=f"Users('{AGENT_ID}')/messages('AAMk23')"), "resourceData": None}]
    plan = _plan(world, items)
    assert (plan.chat_fetches, plan.mail_fetches, plan.events) == ([], {}, [])
    assert [d.reason for d in plan.drops] == ["basic_on_rich"] * 3


# --- drop log ---------------------------------------------------------------------------------


def test_drop_log_writes_one_line_per_reason_and_subscription_per_window() -> None:
    clock = FakeClock()
    drops = DropLog(window=60, clock=clock)
    with structlog.testing.capture_logs() as logs:
        assert drops.record(Drop("client_state_mismatch", TEAMS_SUB, items=3), endpoint="notifications")
        assert not drops.record(Drop("client_state_mismatch", TEAMS_SUB, items=2), endpoint="notifications")
        assert drops.record(Drop("wrong_tenant", TEAMS_SUB), endpoint="notifications")
        assert drops.record(Drop("client_state_mismatch", MAIL_SUB), endpoint="notifications")
        clock.now += 59.9
        assert not drops.record(Drop("client_state_mismatch", TEAMS_SUB), endpoint="notifications")
        clock.now += 0.1
        assert drops.record(Drop("client_state_mismatch", TEAMS_SUB, items=4), endpoint="notifications")
    assert [(e["reason"], e["subscription"], e["items"]) for e in logs] == [
        ("client_state_mismatch", TEAMS_SUB, 3), ("wrong_tenant", TEAMS_SUB, 1),
        ("client_state_mismatch", MAIL_SUB, 1), ("client_state_mismatch", TEAMS_SUB, 4)]
    assert (logs[-1]["suppressed_posts"], logs[-1]["suppressed_items"]) == (2, 3)


def test_drop_log_memory_stays_bounded() -> None:
    clock = FakeClock()
    drops = DropLog(window=60, clock=clock)
    for i in range(2_000):
        clock.now += 1 if i < 1_000 else 0  # then 1,000 keys inside one window
        drops.record(Drop(f"reason_{i}", TEAMS_SUB), endpoint="notifications")
        assert len(drops._entries) <= 512


async def test_a_post_logs_each_reason_once_with_its_item_count(world: World) -> None:
    items = [change_item(client_state="forged") for _ in range(7)] + [change_item(subscription=new_id())] * 2
    with structlog.testing.capture_logs() as logs:
        result = await world.pipeline.process(body(items), lifecycle_endpoint=False)
    assert result.dropped == {"client_state_mismatch": 7, "unknown_subscription": 2}
    assert [(e["reason"], e["items"]) for e in logs if e["event"] == "notification_dropped"] == [
        ("client_state_mismatch", 7), ("unknown_subscription", 2)]


# --- the whole pipeline -----------------------------------------------------------------------


async def test_events_are_stored_before_any_callback_runs(world: World) -> None:
    seen: list[int] = []

    async def on_mail_fetch(message_id: str, partial: dict[str, Any]) -> None:
        seen.append(world.inbox.count())

    world.replace_pipeline(on_mail_fetch=on_mail_fetch)
    items = [rich_mail_item(world.keys), rich_chat_item(world.keys)]
    result = await world.pipeline.process(body(items, [world.token()]), lifecycle_endpoint=False)
    assert seen == [1]
    assert (result.received, result.accepted, result.stored, result.fetches) == (2, 2, 1, 1)


async def test_missing_callbacks_drop_with_a_reason_instead_of_failing(world: World) -> None:
    world.replace_pipeline(on_lifecycle=None, on_mail_fetch=None, on_chat_fetch=None)
    world.basic_subscriptions()
    items = [lifecycle_item(), change_item(), rich_mail_item(world.keys)]
    result = await world.pipeline.process(body(items, [world.token()]), lifecycle_endpoint=False)
    assert result.dropped == {"unhandled_lifecycle": 1, "unhandled_chat": 1, "unhandled_mail": 1}
    assert not result.retry


async def test_process_never_logs_message_text_or_secrets(world: World) -> None:
    token = world.token()
    message = chat_message("1", text="the launch code is 0000")
    items = [rich_chat_item(world.keys, message), rich_chat_item(world.keys, message, client_state="forged"),
             rich_mail_item(world.keys)]
    with structlog.testing.capture_logs() as logs:
        await world.pipeline.process(body(items, [token]), lifecycle_endpoint=False)
    text = json.dumps(logs, default=str)
    for secret in (token, CLIENT_STATE, "launch code", "Quarterly numbers", items[0]["encryptedContent"]["data"]):
        assert secret not in text


async def test_hub_deliveries_carry_no_tokens_and_the_hub_vouches_for_them(world: World) -> None:
    # Event Hubs delivery sends no validationTokens (change-notifications-delivery-event-hubs); the
    # hub's Data Sender role authenticates Graph instead, so rich content is used, not re-read.
    parsed, items, _ = screened(world, [change_item(), rich_chat_item(world.keys)])
    check = await check_tokens(parsed, items, jwks=world.jwks, settings=world.settings, source="eventhub")
    assert [(i.rich, i.fallback) for i in check.items] == [(False, None), (True, None)]
    assert check.drops == [] and check.report is None
    # Tokens that do come are still checked, whatever the transport.
    parsed, items, _ = screened(world, [rich_chat_item(world.keys)], [world.token(azp=new_id())])
    check = await check_tokens(parsed, items, jwks=world.jwks, settings=world.settings, source="eventhub")
    assert [i.fallback for i in check.items] == ["token_bad_caller"]


async def test_a_hub_item_for_another_machines_certificate_is_read_from_graph(world: World) -> None:
    # Machines sharing a hub each hold their own certificate (their own `setup`); Graph encrypts for the
    # one on the subscription, which another machine made. The hub vouches for the sender: read it from Graph.
    other = make_certificate(world.keys.evil)
    foreign = change_item(resource_id="21", encrypted=encrypt_content(json.dumps(chat_message("21")).encode(),
                                                                      other, "other-machine"))
    world.replace_pipeline(source="eventhub")
    result = await world.pipeline.process(body([foreign, rich_chat_item(world.keys, chat_message("22"))]),
                                          lifecycle_endpoint=False)
    assert (result.stored, result.fetches, dict(result.dropped)) == (1, 1, {})
    assert world.calls.chat == [(CHAT_ID, "21")]
    # Anyone can POST to a webhook: there, an item no key of ours opens stays a drop.
    world.replace_pipeline()
    result = await world.pipeline.process(body([foreign], [world.token()]), lifecycle_endpoint=False)
    assert result.dropped == {"decrypt_unknown_certificate": 1} and world.calls.chat == [(CHAT_ID, "21")]
