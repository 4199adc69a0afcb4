"""The `agentseat` command: parse arguments, load settings, call the right part.

Wiring only: each command hands off to the module that owns the work. Errors
from the `AgentSeatError` hierarchy become one clear line on stderr and an
exit code; stdout carries only the command's real output (or, for `serve`,
the MCP protocol).
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import structlog

from . import __version__
from .config import Settings
from .errors import AgentSeatError
from .identity.configfile import with_config_file
from .logging import configure

log = structlog.get_logger("agentseat.serve")

Command = Callable[[argparse.Namespace, Settings], int]


def _runtime_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by serve, watch and bot."""
    parser.add_argument("--mode", choices=["auto", "webhook", "poll", "eventhub"],
                        help="event source (default: auto; eventhub: read Graph's notifications from an Azure event hub)")
    parser.add_argument("--tunnel", choices=["ngrok", "static", "loopback", "none"], help="how Graph reaches the webhook")
    parser.add_argument("--public-url", help="public https URL that forwards to the webhook (--tunnel static)")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    names = ("mode", "tunnel", "public_url", "state_dir")
    found = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if found.get("public_url") and "tunnel" not in found:
        found["tunnel"] = "static"
    return found


# --- commands ------------------------------------------------------------------------


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from .sandbox.app import Sandbox, SandboxOptions
    from .sandbox.behaviour import load_behaviour_file

    state = Path(args.dir) if args.dir else settings.state_dir / "sandbox"
    behaviour = load_behaviour_file(args.behaviour) if args.behaviour else {}
    options = SandboxOptions(host=args.host, port=args.port, reset=args.reset, speed=args.speed, behaviour=behaviour)
    sandbox = Sandbox(state, options)

    async def run() -> None:
        async with sandbox.running():
            print(f"agentseat sandbox listening on {sandbox.url}", flush=True)
            print(f"settings for a runtime: {sandbox.env_path}", flush=True)
            print(f"Event Hubs {sandbox.eventhubs.namespace.fqdn} at {sandbox.eventhubs.endpoint} "
                  f"(GET {sandbox.url}/_sandbox/eventhubs)", flush=True)
            print("press Ctrl-C to stop", flush=True)
            await anyio.sleep_forever()

    try:
        anyio.run(run)
    except KeyboardInterrupt:
        pass
    print("sandbox stopped", flush=True)
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings | None, problem: AgentSeatError | None = None) -> int:
    """Always serve: with broken settings the server still connects and its tools say what to fix.

    The preflight runs before the event loop and anything else can log, so its verdict is the
    first line of stderr, where Claude Code keeps a server's log (reference §1).
    """
    from .tools import preflight
    from .tools.server import serve, serve_not_ready

    prompts = None
    with preflight.held_logs() as held:
        if problem is None and settings is not None:
            prompts, problem = preflight.check(settings)
    if problem is not None:
        log.error("serve_not_ready", problem=problem.message, fix=preflight.fix_of(problem))
    preflight.replay(held)
    if problem is not None or prompts is None or settings is None:
        _startup_loaded()
        anyio.run(serve_not_ready, settings, problem or AgentSeatError("agentseat could not load its settings"))
    else:
        from .runtime import app  # noqa: F401 - the runtime's modules, loaded before collection resumes

        _startup_loaded()
        anyio.run(serve, settings, prompts)
    return 0


def _startup_loaded() -> None:
    """Resume garbage collection, paused by `main` while `serve` imports: imports build modules
    and classes that live as long as the process, and collecting during them took ~15% of the
    startup's CPU. Frozen, they are never scanned again; the little garbage among them stays."""
    gc.freeze()
    gc.enable()


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from .runtime.app import Runtime
    from .runtime.watch import run_watch

    try:
        run_watch(Runtime(settings))
    except KeyboardInterrupt:
        pass
    return 0


# --- identity: setup, teardown, token, status, doctor (work in identity/ and runtime/status.py) ----
def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    from .identity.provision import SetupOptions, setup

    if args.grant and (args.rotate_key or args.retire_old or args.license):
        raise AgentSeatError("--grant only (re)applies the agent's permissions",
                             hint="run --rotate-key, --retire-old or --license without --grant")
    options = SetupOptions(dry_run=args.dry_run, grant_only=args.grant, license_sku=args.license or "",
                           rotate_key=args.rotate_key, retire_old=args.retire_old, wait_seconds=args.wait)
    code = anyio.run(setup, settings, options)
    if code == 0 and not args.dry_run:
        _azure_roles_to_grant(_settings(args))  # read again: setup wrote the agent's ids
    return code


def _azure_roles_to_grant(settings: Settings) -> None:
    """With an event hub configured, the Azure roles setup cannot grant, as `az` commands to run."""
    from .runtime.transport_choice import hub_configured

    if settings.mode not in ("auto", "eventhub") or not hub_configured(settings):
        return
    try:
        from .eventhub.doctor import az_commands
    except ImportError:
        print("Event Hubs is configured but its SDK is not installed: pip install 'agentseat[eventhub]'")
        return
    print("Event Hubs: setup cannot grant Azure roles. Run these once (an Azure admin may have to), "
          "then `agentseat doctor`:")
    for command in az_commands(settings):
        print(f"  {command}")


def cmd_teardown(args: argparse.Namespace, settings: Settings) -> int:
    from .identity.teardown import teardown

    return anyio.run(lambda: teardown(settings, dry_run=args.dry_run, yes=args.yes))


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from .identity.doctor import token

    return anyio.run(lambda: token(settings, args.resource, decode=args.decode))


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from .runtime.status import status

    return status(settings)


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from .identity.doctor import doctor

    if args.live:
        from .identity.doctor_live import doctor_live

        return anyio.run(lambda: doctor_live(settings, args.report))
    if args.report is not None:
        raise AgentSeatError("--report goes with --live", hint="agentseat doctor --live --report FILE")
    return anyio.run(functools.partial(doctor, settings, extra=transport_checks(settings)))


def transport_checks(settings: Settings) -> Any:
    """The transport's own doctor checks: Event Hubs in eventhub mode (its SDK is an extra); in auto
    mode, which transport auto chooses and why (runtime/transport_choice.py)."""
    if settings.mode == "auto":
        from .runtime.transport_choice import auto_checks

        return auto_checks
    if settings.mode != "eventhub":
        return None
    from .identity.doctor import Check

    try:
        from .eventhub.doctor import eventhub_checks
    except ImportError as exc:
        missing = exc.name

        async def sdk_missing(settings: Settings, identity_ok: bool) -> list[Check]:
            return [Check("event hub", "fail", f"the Azure Event Hubs SDK is not installed ({missing})",
                          "pip install 'agentseat[eventhub]'")]

        return sdk_missing

    async def hub(settings: Settings, identity_ok: bool) -> list[Check]:
        return await eventhub_checks(settings, identity_ok=identity_ok)

    return hub


def _identity_commands(parsers: dict[str, argparse.ArgumentParser]) -> None:
    p = parsers["setup"]
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--grant", action="store_true", help="only (re)apply the agent's permissions (app role, consent)")
    p.add_argument("--license", metavar="SKU", help="assign this licence (skuId or skuPartNumber) to the Agent User")
    p.add_argument("--rotate-key", action="store_true", help="append a new certificate and make it the active one")
    p.add_argument("--retire-old", action="store_true", help="remove every non-active certificate from Entra and disk")
    p.add_argument("--wait", type=float, metavar="SECONDS",
                   help="wait this long for Entra to replicate (default: AGENTSEAT_SETUP_WAIT_SECONDS, 180)")
    p.set_defaults(func=cmd_setup)
    p = parsers["teardown"]
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--yes", action="store_true", help="confirm: delete the agent's identity objects and keys")
    p.set_defaults(func=cmd_teardown)
    p = parsers["token"]
    p.add_argument("--resource", default="graph", help="graph (default), exchange (hop 2) or a resource URI")
    p.add_argument("--decode", action="store_true", help="print the header and claims as JSON, without the signature")
    p.set_defaults(func=cmd_token)
    parsers["status"].set_defaults(func=cmd_status)
    p = parsers["doctor"]
    p.add_argument("--live", action="store_true",
                   help="also probe what this tenant does (lifetimes, $orderby, mailbox, Teams) and record it")
    p.add_argument("--report", type=Path, metavar="FILE", help="with --live: write the findings as JSON (0600, no secrets)")
    p.set_defaults(func=cmd_doctor)


# --- bot and demo (work in bot.py and demo.py) ----------------------------------------------------
def cmd_bot(args: argparse.Namespace, settings: Settings) -> int:
    from .bot import BotOptions, run_bot

    timeout = settings.bot_timeout_seconds if args.timeout is None else args.timeout
    options = BotOptions.parse(args.exec, args.allow or [], timeout)
    if args.install_service or args.print_unit or args.force:
        return _bot_service(args, settings)
    return run_bot(settings, options)


def _bot_service(args: argparse.Namespace, settings: Settings) -> int:
    """`--install-service`: a systemd user unit that runs this same bot command (agentseat/service)."""
    import os

    from . import service

    if not args.install_service:
        raise AgentSeatError("--print and --force go with --install-service",
                             hint="agentseat bot --exec CMD --install-service [--print | --force]")
    command = service.BotCommandLine(exec_line=args.exec, allow=args.allow or [], timeout=args.timeout,
                                     mode=args.mode, tunnel=args.tunnel, public_url=args.public_url,
                                     env_file=args.env_file, verbose=args.verbose)
    spec, left_out = service.service_spec(command, settings, os.environ)
    service.warn_left_out(left_out, settings, sys.stderr)
    if args.print_unit:
        return service.print_unit(spec, sys.stdout)
    return service.install(spec, settings, os.environ, force=args.force, out=sys.stdout, err=sys.stderr,
                           ask=service.interactive_prompt())


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import run_demo

    return run_demo(Path(args.dir) if args.dir else None, verbose=args.verbose)


def _reactive_commands(parsers: dict[str, argparse.ArgumentParser]) -> None:
    p = parsers["bot"]
    p.add_argument("--exec", required=True, metavar="CMD",
                   help="handler command (split like a shell, run without one); the event arrives as JSON on stdin")
    p.add_argument("--allow", action="append", metavar="UPN",
                   help="also run the handler for this person (repeatable), or '*' for everyone (default: sponsors)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="seconds a handler may run (default: AGENTSEAT_BOT_TIMEOUT_SECONDS)")
    p.add_argument("--install-service", action="store_true",
                   help="write a systemd user unit that runs this bot command, instead of running it")
    p.add_argument("--print", dest="print_unit", action="store_true", help="with --install-service: show the unit, write nothing")
    p.add_argument("--force", action="store_true", help="with --install-service: replace a different existing unit")
    parsers["demo"].add_argument("--dir", help="keep the sandbox and agent state here (default: a temporary directory)")


# --- access (work in access/commands.py) -----------------------------------------------------------
def cmd_access(args: argparse.Namespace, settings: Settings) -> int:
    from .access import commands

    if args.action == "list":
        return commands.access_list(settings, sys.stdout)
    if not args.target:
        raise AgentSeatError(f"`agentseat access {args.action}` needs a CODE or a person",
                             hint="`agentseat access list` shows pending codes, held senders and the allowlist")
    action = {"approve": commands.access_approve, "deny": commands.access_deny, "revoke": commands.access_revoke}
    code = action[args.action](settings, args.target, sys.stdout)
    if code == 0:
        _audited_access(settings, args.action, args.target)
    return code


def _access_command(parsers: dict[str, argparse.ArgumentParser]) -> None:
    p = parsers["access"]
    p.add_argument("action", choices=["list", "approve", "deny", "revoke"],
                   help="list: policy, allowlist, codes, held; approve/deny CODE (or a held sender); revoke PERSON")
    p.add_argument("target", nargs="?", help="a pairing code, or a UPN, mail address or object id")
    p.set_defaults(func=cmd_access)


# --- audit (work in audit/commands.py) ---------------------------------------------------------
def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from .audit import commands

    if args.action == "verify":
        return commands.audit_verify(settings, sys.stdout)
    if args.action == "export":
        return commands.audit_export(settings, args.since, sys.stdout)
    return commands.audit_tail(settings, args.limit, sys.stdout)


def _audit_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="the hash-chained audit log: tail | verify | export --since TIME")
    p.add_argument("action", choices=["tail", "verify", "export"])
    p.add_argument("--since", metavar="TIME", help="export: rows from this ISO 8601 time on")
    p.add_argument("--limit", type=_positive, default=20, metavar="N", help="tail: the newest N rows (default 20)")
    p.set_defaults(func=cmd_audit)


def _audited_access(settings: Settings, action: str, target: str) -> None:
    """An approval, denial or revocation changes who reaches the agent: the audit log keeps it."""
    from .audit import AuditLog

    log_file = AuditLog(settings.state_dir / "audit.db")
    try:
        log_file.append("action", f"access_{action}", target=target)
    finally:
        log_file.close()


# --- inbox (work in runtime/inbox_view.py) -------------------------------------------------------
def cmd_inbox(args: argparse.Namespace, settings: Settings) -> int:
    from .runtime.inbox_view import show_inbox

    return show_inbox(settings, everything=args.all, limit=args.limit, as_json=args.json)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def _inbox_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("inbox", help="list the agent's unread events (--all: every event); marks nothing read")
    p.add_argument("--all", action="store_true", help="every event, read or not, newest --limit of them")
    p.add_argument("--limit", type=_positive, default=50, metavar="N", help="at most N events (default 50)")
    p.add_argument("--json", action="store_true", help="machine output: the summary and events as JSON")
    p.set_defaults(func=cmd_inbox)


def _not_ready(name: str) -> Command:
    def command(args: argparse.Namespace, settings: Settings) -> int:
        raise AgentSeatError(f"`agentseat {name}` is not available in this build", hint="see README.md")

    return command


COMMANDS: dict[str, Command] = {"watch": cmd_watch, "bot": cmd_bot, "demo": cmd_demo}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentseat", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"agentseat {__version__}")
    parser.add_argument("--state-dir", type=Path, help="state directory (default: ~/.local/state/agentseat)")
    parser.add_argument("--env-file", type=Path, help="read settings from this file (e.g. a sandbox.env)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sandbox", help="run the local Microsoft 365 sandbox tenant in the foreground")
    p.add_argument("--dir", help="sandbox state directory (default: <state-dir>/sandbox)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--speed", type=float, default=1.0, help="run the sandbox clock this many times faster")
    p.add_argument("--reset", action="store_true", help="discard the stored tenant and start afresh")
    p.add_argument("--behaviour", type=Path, metavar="FILE.json",
                   help="start with these switchboard values (see GET /_sandbox/behaviour)")
    p.set_defaults(func=cmd_sandbox)

    for name, help_text in (
        ("serve", "run the MCP stdio server (what Claude Code starts)"),
        ("watch", "run the runtime and print one JSON line per event"),
        ("bot", "run a handler command for each message and reply with its output"),
        ("demo", "one-command tour on the embedded sandbox"),
        ("setup", "provision the agent's identity, key and consent"),
        ("teardown", "reverse `agentseat setup`"),
        ("token", "print the agent's current access token"),
        ("status", "show mode, subscriptions and inbox counts"),
        ("doctor", "check settings, key, token hops, Graph and scopes"),
        ("access", "who may reach the agent: list | approve CODE | deny CODE | revoke PERSON"),
    ):
        p = sub.add_parser(name, help=help_text)
        if name in ("serve", "watch", "bot"):
            _runtime_options(p)
        p.set_defaults(func={"serve": cmd_serve, **COMMANDS}.get(name) or _not_ready(name))
    _identity_commands(sub.choices)
    _reactive_commands(sub.choices)
    _access_command(sub.choices)
    _inbox_command(sub)
    _audit_command(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = _overrides(args)
    if args.env_file is not None:
        overrides["_env_file"] = (str(args.env_file),)
    return with_config_file(Settings(**overrides), args.env_file, _overrides(args))  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.func is cmd_serve:
            gc.disable()  # until the startup imports are done (`_startup_loaded`)
            try:
                settings = _settings(args)
            except Exception as exc:  # ValidationError or ConfigError: serve connects and says so
                from .tools.preflight import invalid_settings

                configure("debug" if args.verbose else "info")
                return cmd_serve(args, None, invalid_settings(exc))
        else:
            settings = _settings(args)
        configure("debug" if args.verbose else settings.log_level, settings.log_format)
        return int(args.func(args, settings))
    except AgentSeatError as exc:
        print(f"agentseat: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
