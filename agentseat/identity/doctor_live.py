"""`agentseat doctor --live`: the checks, then what this tenant really does.

After the ordinary checks (doctor.py), it signs in as the runtime does (the agent's own
token chain through `TokenProvider`, and the same `GraphClient`) and runs each probe in
doctor_probes.py and doctor_lifetime.py one after the other: few requests, and none at
once, so it stays far inside Graph's limits. Every fact a probe establishes is recorded
in the tenant facts, where `status` and the runtime see it. Each finding is printed on
its own line; `--report FILE` also writes them, scrubbed, for a bug report.

Exit code: 0 once the probes ran, whatever they found; 78 when the agent is not
configured; 1 when no Graph token could be had (the checks above say which hop failed).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from ..config import Settings
from ..errors import AgentSeatError, ConfigError
from ..graph.client import GraphClient
from ..tenant_facts import TenantFacts
from . import doctor_probes as probes
from .doctor import Check, credential_for, diagnose
from .doctor_lifetime import chat_subscription_lifetime
from .doctor_probes import Finding
from .doctor_report import build_report, scrub, write_report
from .tokens import TokenProvider, decode_jwt

__all__ = ["doctor_live", "live_findings"]

async def live_findings(settings: Settings, facts: TenantFacts) -> list[Finding]:
    """Run every probe with the agent's delegated token; raises `AgentSeatError` without one."""
    provider = TokenProvider(settings, credential_for(settings))
    claims = decode_jwt(await provider.get())[1]
    found = [probes.validation_tokens(facts)]
    async with GraphClient(settings, provider) as graph:
        try:
            found.append(await chat_subscription_lifetime(settings, graph))
        except AgentSeatError as exc:  # a probe's own failure is a finding, not the end of the run
            found.append(Finding("chat subscription lifetime", "warn", f"unknown: {exc.message}"))
        except OSError as exc:  # the port for Graph's handshake could not be opened
            found.append(Finding("chat subscription lifetime", "warn",
                                 f"unknown: cannot listen for Graph's validation request ({exc.strerror or exc})"))
        teams = await probes.teams(graph)
        found.append(await probes.chats_orderby(graph, teams.value == "ready"))
        found.append(await probes.mailbox(graph))
        found.append(teams)
    found.append(probes.scopes(claims))
    found.append(probes.blueprint_key_route(facts))
    return found


async def doctor_live(settings: Settings, report: Path | None = None, out: TextIO | None = None) -> int:
    """`agentseat doctor --live [--report FILE]`."""
    out = out or sys.stdout
    missing = settings.missing_identity()
    if missing:
        raise ConfigError(f"doctor --live needs the agent's configuration; missing {', '.join(missing)} "
                          f"(config file {settings.config_file})",
                          hint="run `agentseat setup`, or pass --env-file with the file setup wrote")
    checks = await diagnose(settings)
    for check in checks:
        print(check.render(), file=out, flush=True)
    facts = TenantFacts(settings.state_dir)
    findings: list[Finding] = []
    problem: AgentSeatError | None = None
    if _has_token(checks):
        print(f"live probes of tenant {settings.tenant_id} at {settings.graph_host}:", file=out, flush=True)
        try:
            findings = await live_findings(settings, facts)
        except AgentSeatError as exc:
            problem = exc
    else:
        problem = AgentSeatError("no delegated Graph token, so the live probes did not run",
                                 hint="fix the first failed check above")
    for finding in findings:
        if finding.fact:
            facts.record(finding.fact, finding.value)
        print(finding.render(), file=out, flush=True)
    if report is not None:
        data = build_report(settings, [_check_json(c) for c in checks], [f.to_json() for f in findings],
                            TenantFacts.read(settings.state_dir))
        if problem is not None:
            data["error"] = scrub({"message": problem.message, "hint": problem.hint or ""})
        write_report(report, data)
        print(f"report written to {report} (no secrets, no message text)", file=out, flush=True)
    if problem is not None:
        raise problem
    return 0


def _has_token(checks: list[Check]) -> bool:
    return any(c.name == "hop 3" and c.status == "ok" for c in checks)


def _check_json(check: Check) -> dict[str, str]:
    return {"name": check.name, "status": check.status, "detail": check.detail}

