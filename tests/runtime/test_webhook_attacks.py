"""The attack corpus in CI: one case of every kind against a live `agentseat watch` webhook.

The full corpus (all cases, 10,000 Hypothesis bodies, a 45-second slowloris) is
`python -m bench attack`; this runs the first case of each kind and 200
generated bodies, judged the same way: no 5xx the runtime does not answer on
purpose, no dropped connection, no error or traceback logged, no secret in a
response or a log line, no event from a forged notification, the genuine
replays stored exactly once. That includes the kinds that follow one captured
POST further: a forged sponsor claim dropped by Graph confirmation, a basic-item
flood causing no Graph read, and floods of each lifecycle event kept within their
bounds (at most two resyncs or removal checks per kind, one PATCH per subscription),
with the subscriptions still held and genuine deliveries stored after each.
The header slowloris needs the idle timeout to pass, so
tests/runtime/test_webhook_hardening.py covers it with a short one; the corpus'
tag-injection step (MCP read tools) has its CI side in tests/tools/test_neutralise_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.notifications.rules import live_subscriptions
from bench._attack_corpus import KINDS
from bench._harness import inbox_rows, scan_logs
from bench.attack import fuzz, run_kind, start_runtime, target_for


async def test_one_case_of_every_attack_kind_is_refused_by_a_live_webhook(sandbox: Sandbox, tmp_path: Path) -> None:
    proc, env, port = await start_runtime(sandbox, tmp_path)
    state = Path(env["AGENTSEAT_STATE_DIR"])
    try:
        t = target_for(sandbox, env, f"http://127.0.0.1:{port}", proc.pid, proc.stderr_path)

        def keys() -> set[str]:
            return {row[0] for row in inbox_rows(state, "key")}

        failures = []
        offset = 0
        async with aiohttp.ClientSession() as session:
            for kind in KINDS:
                if kind.name == "slowloris_headers":
                    continue
                result, offset = await run_kind(session, t, kind, quick=True, inbox_keys=keys,
                                                log_path=proc.stderr_path, alive=proc.alive, log_offset=offset)
                if result.crashed or (result.leaked and not kind.limit):
                    failures.append((kind.name, result.notes, [c for c in result.cases if c["verdict"] != "rejected"]))
            fuzzed, offset = await fuzz(session, t, 200, 16, inbox_keys=keys, log_path=proc.stderr_path,
                                        alive=proc.alive, log_offset=offset, seed=0)
        assert failures == []
        assert (fuzzed["crashed"], fuzzed["leaked"]) == (0, 0), fuzzed["problems"]
        # Every subscription has its own clientState; none may reach a log line.
        secrets = {f"client_state_{n}": s.client_state for n, s in enumerate(live_subscriptions(sandbox))}
        scan = scan_logs([proc.stderr_path], {**secrets, "key_passphrase": env["AGENTSEAT_KEY_PASSPHRASE"]},
                         markers=t.markers)
        assert scan["findings"] == {}, scan["examples"]
    finally:
        proc.stop()
