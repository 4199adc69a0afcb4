"""bench/gates.py runs the runtime's intake and access policy on genuine sandbox notifications:
every sponsor claim is confirmed through the intake's reader, each policy mode decides as its
rule says, and the report prints the lines. No figure is asserted, only that it was measured."""

from __future__ import annotations

import math
from pathlib import Path

from bench import gates, report
from bench.harness import SandboxHost


async def test_gates_measure_each_step_on_genuine_events(tmp_path: Path) -> None:
    async with SandboxHost(tmp_path) as host:
        env = await host.provision(tmp_path / "agent")
        got = await gates.measure(host, env, tmp_path / "gates", posts=8)
    assert "skipped" not in got
    per = got["items_per_round"]
    assert got["confirmed"] == per * gates.ROUNDS  # each sponsor claim read back and stored as Graph has it
    assert got["decide_us"]["tenant_decision"] == "open"
    assert got["decide_us"]["allowlist_decision"] == "allow"
    assert got["decide_us"]["pairing_decision"] == "hold"
    for label in ("admit_tenant_gate", "admit_access_policy", "confirm_admit_pending", "confirm_worker"):
        assert got[label]["cpu_us_per_item"] > 0
    f = report.figures({"gates": got})
    assert not math.isnan(f["trust_confirmation_cpu_us_per_item"])
    text = "\n".join(gates.lines(got))
    assert "access policy, per item" in text and f"({per * gates.ROUNDS} confirmed)" in text
