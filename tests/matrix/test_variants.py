"""The end-to-end matrix: every variant Microsoft's docs leave open, one real run each.

Each run is what a user does on a new tenant: `agentseat setup` (a subprocess, like a
user's shell), `agentseat watch` in webhook mode, a sponsor's DM and a colleague's mail,
a restart with more of both sent while it was down. Under every variant, and with all
the hostile ones at once, every message must be stored exactly once, and `agentseat
status` must say what the runtime adapted to. Delays are short so CI can run it all;
time limits are safety bounds, never measurements.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentseat.sandbox.app import Sandbox, SandboxOptions
from tests.agent_process import cli_env, run_cli, start_watch, stop, stored
from tests.runtime.test_runtime import control, free_port, upn, wait_for

PASSPHRASE = "matrix-passphrase-not-secret"

#: variant -> (behaviour, lines `agentseat status` must show once the run is over)
VARIANTS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "documented_defaults": ({}, ("validation_tokens = ", '"audience": "agent_identity"')),
    "tokens_for_the_blueprint": ({"validation_token_audience": "blueprint"}, ('"audience": "blueprint"',)),
    "no_validation_tokens": ({"validation_token_audience": "none"}, ('"audience": "missing"',)),
    "chat_subscriptions_last_an_hour": ({"chat_subscription_max_minutes": 60},
                                        ("chat_subscription_max_minutes = 60",)),
    "orderby_rejected": ({"chats_orderby": "rejected"}, ("chats_orderby = rejected",)),
    "filter_ignored": ({"messages_filter": "ignored"}, ("messages_filter = ",)),
    "replication_delay": ({"replication_delay_seconds": 3}, ()),
    "mailbox_not_ready_at_first": ({"mailbox_ready_after_seconds": 8}, ("mailbox = ready",)),
    "blueprint_key_routes_only": ({"blueprint_key_route": "blueprint_only"}, ("blueprint_key_route = blueprint",)),
    "graph_slow": ({"graph_latency_ms": [20, 120]}, ()),
    "delivery_delayed": ({"delivery_delay_ms": {"chat": [300, 1500], "mail": [500, 2500]}}, ()),
    "outlook_concurrency_two": ({"outlook_max_concurrency": 2}, ()),
}
HOSTILE = {key: value for behaviour, _ in VARIANTS.values() for key, value in behaviour.items()}
HOSTILE_EXPECTED = ('"audience": "missing"', "chat_subscription_max_minutes = 60", "chats_orderby = rejected",
                    "mailbox = ready")
CASES = {**VARIANTS, "all_hostile_at_once": (HOSTILE, HOSTILE_EXPECTED)}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sandbox_options(case: str) -> SandboxOptions:
    return SandboxOptions(behaviour=CASES[case][0])


def _cli(sandbox: Sandbox, state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return run_cli(sandbox, state, *argv, env=cli_env(PASSPHRASE))


def _watch(sandbox: Sandbox, state: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return start_watch(sandbox, state, log, cli_env(PASSPHRASE, {
        "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback", "AGENTSEAT_WEBHOOK_PORT": str(port),
        "AGENTSEAT_INBOUND_POLICY": "tenant"}))


async def _started(log: Path) -> None:
    """The runtime has subscribed and reconciled Teams: from here on nothing sent is missed. (A
    first run starts its watermark at "now", so a DM sent before it ever ran is not backlog.)"""
    await wait_for(lambda: "kind=teams reason=startup" in log.read_text(errors="replace"), timeout=120)


async def _send(sandbox: Sandbox, round_: int) -> list[str]:
    dm = await control(sandbox, "POST", "/_sandbox/messages", {
        "from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": f"sponsor asks, round {round_}"})
    mail = await control(sandbox, "POST", "/_sandbox/mail", {
        "from": upn(sandbox, "colleague1"), "to": upn(sandbox, "agent_user"),
        "subject": f"figures, round {round_}", "body": "Could you send the figures?"})
    return [dm["message_id"], mail["message_id"]]


@pytest.mark.timeout(300)
async def test_every_message_arrives_exactly_once_and_status_says_what_was_adapted(
        case: str, sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "agent"
    setup = _cli(sandbox, state, "setup")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    port = free_port()  # the same URL across the restart, as a tunnel with a fixed domain
    proc = _watch(sandbox, state, port, tmp_path / "watch1.log")
    sent: list[str] = []
    try:
        await _started(tmp_path / "watch1.log")
        sent += await _send(sandbox, 1)
        await wait_for(lambda: set(sent) <= set(stored(state)), timeout=120)
        stop(proc)
        sent += await _send(sandbox, 2)  # while nobody runs: found by the restart's reconcile
        proc = _watch(sandbox, state, port, tmp_path / "watch2.log")
        sent += await _send(sandbox, 3)
        await wait_for(lambda: set(sent) <= set(stored(state)), timeout=120)
    finally:
        stop(proc)
    counts = stored(state)
    assert {m: counts[m] for m in sent} == {m: 1 for m in sent}, "each message exactly once"
    status = _cli(sandbox, state, "status")
    assert status.returncode == 0, status.stderr
    for line in CASES[case][1]:
        assert line in status.stdout, f"`agentseat status` does not say {line!r}:\n{status.stdout}"
    assert "Could you send the figures?" not in status.stdout  # never a message's text
