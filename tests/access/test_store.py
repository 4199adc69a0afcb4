"""`access.db` and the policy's decisions, alone: codes, expiry, limits, the allowlist, held order."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agentseat.access.commands import access_approve, access_deny, access_list, access_revoke
from agentseat.access.policy import AccessPolicy, approve_code
from agentseat.access.store import CODE_SECONDS, MAX_PENDING, AccessError, AccessStore
from agentseat.config import Settings
from agentseat.runtime.events import Event


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def dm(sender: str, n: int, *, trust: str = "colleague", chat: str = "") -> Event:
    return Event.teams(chat_id=chat or f"19:{sender}_agent@unq.gbl.spaces", message_id=str(n), sender_id=sender,
                       sender_upn="", sender_name=f"{sender.title()} Person", trust=trust,  # type: ignore[arg-type]
                       text=f"message {n}", created_at="2026-12-06T03:00:00Z", source="webhook", confirmed=True)


def mail(address: str, n: int, *, trust: str = "colleague") -> Event:
    return Event.mail(message_id=f"m{n}", sender_id="", sender_upn=address, sender_name="Mail Person",
                      trust=trust, text=f"mail {n}", subject="s", created_at="2026-12-06T03:00:00Z",  # type: ignore[arg-type]
                      source="webhook", confirmed=True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> AccessStore:
    return AccessStore(tmp_path / "access.db", clock=clock)


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, state_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_access_db_is_private(store: AccessStore) -> None:
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_at_most_three_codes_are_pending_and_one_per_sender(store: AccessStore) -> None:
    first = store.offer_code(dm("u1", 1))
    assert first is not None and len(first.code) == 6
    assert store.offer_code(dm("u1", 2)) is None  # one pending already for this sender
    assert store.offer_code(dm("u2", 3)) and store.offer_code(dm("u3", 4))
    assert store.offer_code(dm("u4", 5)) is None  # MAX_PENDING reached
    assert len(store.pending()) == MAX_PENDING == 3


def test_a_code_expires_after_one_hour(store: AccessStore, clock: Clock) -> None:
    code = store.offer_code(dm("u1", 1))
    assert code is not None
    clock.now += CODE_SECONDS - 1
    assert store.code(code.code.lower()) is not None  # still valid, any case
    clock.now += 1
    assert store.code(code.code) is None and store.pending() == []
    with pytest.raises(AccessError, match="no pending pairing code"):
        store.approve_code(code.code, via="cli")
    assert store.offer_code(dm("u1", 2)) is not None  # the sender may ask again


def test_expired_codes_free_their_slot(store: AccessStore, clock: Clock) -> None:
    for i in range(MAX_PENDING):
        assert store.offer_code(dm(f"u{i}", i)) is not None
    assert store.offer_code(dm("late", 9)) is None
    clock.now += CODE_SECONDS
    assert store.offer_code(dm("late", 10)) is not None


def test_held_messages_keep_arrival_order_and_dedupe(store: AccessStore) -> None:
    events = [dm("u1", 1), mail("x@contoso.test", 2), dm("u1", 3)]
    assert [store.hold(e) for e in events] == [True, True, True]
    assert store.hold(dm("u1", 1)) is False  # the same message again (webhook and poll)
    assert [h.event for h in store.held()] == events
    assert store.held_counts() == {"u1": 2, "x@contoso.test": 1}


def test_approval_survives_reopening_the_file(tmp_path: Path, clock: Clock) -> None:
    store = AccessStore(tmp_path / "access.db", clock=clock)
    code = store.offer_code(dm("u1", 1), upn="u1@contoso.test", mail="u1@contoso.test")
    assert code is not None
    person = store.approve_code(code.code, via="cli")
    store.close()
    again = AccessStore(tmp_path / "access.db", clock=clock)
    assert [p.key for p in again.allowed()] == ["u1"] and person.names() == {"u1", "u1@contoso.test"}
    assert again.pending() == []


def test_deny_drops_the_held_messages_for_good(store: AccessStore) -> None:
    store.hold(dm("u1", 1))
    store.hold(dm("u1", 2))
    code = store.offer_code(dm("u1", 1))
    assert code is not None
    assert store.deny_code(code.code)[1] == 2
    assert store.held() == [] and store.pending() == []
    assert store.hold(dm("u1", 1)) is False  # a later poll does not hold a denied message again
    assert store.hold(dm("u1", 3)) is True


def test_external_codes_are_refused_unless_allowed(store: AccessStore) -> None:
    code = store.offer_code(dm("ext", 1, trust="external"))
    assert code is not None and code.external
    with pytest.raises(AccessError, match="another tenant"):
        approve_code(store, code.code, allow_external=False, via="cli")
    assert approve_code(store, code.code, allow_external=True, via="cli").key == "ext"


@pytest.mark.parametrize(("policy", "colleague", "external", "listed"), [
    ("sponsors", "hold", "hold", "hold"),
    ("allowlist", "hold", "hold", "allow"),
    ("pairing", "hold", "hold", "allow"),
    ("tenant", "open", "hold", "allow"),
])
def test_decisions_per_policy(tmp_path: Path, policy: str, colleague: str, external: str, listed: str) -> None:
    gate = AccessPolicy(settings(tmp_path, inbound_policy=policy, allow="listed-id, carol@contoso.test"))
    assert gate.decide(dm("boss", 1, trust="sponsor")) == "allow"
    assert gate.decide(dm("someone", 2)) == colleague
    assert gate.decide(dm("outsider", 3, trust="external")) == external
    assert gate.decide(dm("listed-id", 4)) == listed
    assert gate.decide(mail("carol@contoso.test", 5)) == listed


def test_bot_allow_adds_to_every_policy(tmp_path: Path) -> None:
    gate = AccessPolicy(settings(tmp_path, inbound_policy="sponsors"))
    assert gate.decide(dm("helper", 1)) == "hold"
    gate.extend(["HELPER"])
    assert gate.decide(dm("helper", 1)) == "allow"
    gate.extend(["*"])
    assert gate.decide(dm("anyone", 2, trust="external")) == "allow"


def test_an_approval_from_another_process_is_seen_after_refresh(tmp_path: Path) -> None:
    gate = AccessPolicy(settings(tmp_path))
    assert gate.decide(dm("u1", 1)) == "hold"
    cli = AccessStore(tmp_path / "access.db")
    version = gate.store.data_version()
    cli.add_allowed("u1", via="cli")
    assert gate.store.data_version() != version  # what the runtime's timer watches
    gate.refresh()
    assert gate.decide(dm("u1", 1)) == "allow"


def test_cli_commands_approve_deny_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = settings(tmp_path)
    store = AccessStore(tmp_path / "access.db")
    store.hold(dm("u1", 1))
    store.hold(mail("bob@contoso.test", 2))
    store.hold(mail("eve@fabrikam.test", 3, trust="external"))
    code = store.offer_code(dm("u1", 1))
    assert code is not None
    import io

    out = io.StringIO()
    assert access_list(s, out) == 0
    assert code.code in out.getvalue() and "held messages (3)" in out.getvalue()
    assert access_approve(s, code.code.lower(), out) == 0
    assert access_approve(s, "bob@contoso.test", out) == 0  # a mail sender: approved by address
    with pytest.raises(AccessError, match="another tenant"):
        access_approve(s, "eve@fabrikam.test", out)
    assert access_deny(s, "eve@fabrikam.test", out) == 0
    assert {p.key for p in store.allowed()} == {"u1", "bob@contoso.test"}
    assert [h.event.sender_upn for h in store.held()] == ["", "bob@contoso.test"]  # released by the runtime
    assert access_revoke(s, "bob@contoso.test", out) == 0
    with pytest.raises(AccessError, match="not on the allowlist"):
        access_revoke(s, "bob@contoso.test", out)
    with pytest.raises(AccessError, match="no pending pairing code"):
        access_approve(s, "ZZZZZZ", out)


def test_agentseat_inbox_lists_held_messages(tmp_path: Path) -> None:
    import io
    import json

    from agentseat.runtime.inbox_view import show_inbox

    store = AccessStore(tmp_path / "access.db")
    store.hold(mail("bob@contoso.test", 1))
    store.hold(dm("u1", 2))
    out = io.StringIO()
    assert show_inbox(settings(tmp_path), out=out) == 0
    lines = out.getvalue().splitlines()
    assert "held by the access policy (2)" in out.getvalue()
    assert [line.split()[1] for line in lines if line.startswith("held  ")] == ["mail", "teams"]
    out = io.StringIO()
    show_inbox(settings(tmp_path), as_json=True, out=out)
    assert [row["text"] for row in json.loads(out.getvalue())["held"]] == ["mail 1", "message 2"]
