"""The MCP stdio server: tools, the instructions and body prompt, the Claude Code channel, the serve loop.

It owns the MCP surface: which tools and prompts exist, how a tool call becomes a
result or a tool error, the `claude/channel` capability, and running the protocol
beside the runtime in one task group. A server whose settings are broken still
serves (`serve_not_ready`): a host shows its answers, not "Failed to connect".
stdout carries only the protocol (fd 1 is diverted to stderr while it serves).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
import structlog
from mcp.server import Server
from mcp.server.runner import serve_loop
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from .. import __version__, progress
from ..errors import AgentSeatError, TokenError
from ..prompts.loader import MAX_INSTRUCTIONS, Prompts
from . import cards, downloads, events, files, identity, mail, team_channels, teams, teams_actions
from .base import Tool, ToolImage
from .channel import ChannelSink
from .events import EventCursor
from .memory import memory_tools
from .permission import CAPABILITY as PERMISSION_CAPABILITY
from .permission import REQUEST_METHOD as PERMISSION_REQUEST
from .permission import PermissionRelay
from .preflight import RESTART, NoRuntime, fix_of
from .stdout import WireStream, claimed_stdout

if TYPE_CHECKING:
    from ..config import Settings
    from ..runtime.app import Runtime

log = structlog.get_logger(__name__)

SERVER_NAME = "agentseat"  # Claude Code shows it as the channel's `source`
#: Presence of this experimental capability is what registers the channel listener (python-ecosystem §3).
CHANNEL_CAPABILITY: dict[str, dict[str, Any]] = {"claude/channel": {}}
PROMPT_NAME = "agent_body"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)


def error_result(message: str, hint: str | None = None) -> types.CallToolResult:
    text = f"error: {message}" + (f"\nwhat to do: {hint}" if hint else "")
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


FailureView = Callable[[AgentSeatError], dict[str, Any]]
#: A gate's refusal, as the gates word it: "refused: ..." or "files: refused PATH: ...".
_REFUSED = re.compile(r"^(?:\w+: )?refused\b")
STOPPED = "the agentseat runtime has stopped"


class ToolBox:
    """The registered tools and the one place a call is validated, run, and mapped to a result."""

    def __init__(self, tools: list[Tool], *, views: dict[str, FailureView] | None = None) -> None:
        self.tools = {t.name: t for t in tools}
        #: Set when the tools cannot work: the server is not ready, or the runtime under them stopped.
        self.failure: AgentSeatError | None = None
        self.headline = STOPPED
        #: What a tool answers instead of an error while `failure` is set (`status`, `whoami`).
        self.views = views or {}
        self._passing = False  # the failure lasts only while its cause does (see `pass_failure`)
        #: Told of every gate's refusal (a tool error starting "refused"): the audit log (issue 15).
        self.on_refusal: Callable[[str, str], None] | None = None
        self._listing: list[types.Tool] | None = None

    @property
    def stopped(self) -> bool:
        """A lasting failure is set: nothing will clear it before a restart."""
        return self.failure is not None and not self._passing

    def fail(self, failure: AgentSeatError, headline: str = STOPPED, *, passing: bool = False) -> None:
        """From now on the tools say `failure`; `passing` marks one a later success may clear."""
        if self.stopped and passing:
            return  # a lasting failure (the runtime stopped) is never replaced by a passing one
        self.failure, self._passing, self.headline = failure, passing, headline

    def pass_failure(self) -> None:
        """Clear a passing failure: its cause has gone (a token arrived after all)."""
        if self._passing:
            self.failure, self._passing, self.headline = None, False, STOPPED

    def listing(self) -> list[types.Tool]:
        """What `tools/list` answers, built on the first call and kept: pydantic's JSON schemas for
        every tool take tens of milliseconds, and the tools never change while the server runs."""
        if self._listing is None:
            self._listing = [types.Tool(name=t.name, description=t.description, input_schema=t.input_schema(),
                                        annotations=types.ToolAnnotations(read_only_hint=t.read_only))
                             for t in self.tools.values()]
        return self._listing

    async def call(self, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
        """Every failure is a tool error whose message says what to do; nothing escapes as a crash."""
        tool = self.tools.get(name)
        if tool is None:
            return error_result(f"there is no tool {name!r}", f"use one of: {', '.join(sorted(self.tools))}")
        if self.failure is not None:
            if (view := self.views.get(name)) is not None:
                return types.CallToolResult(content=[types.TextContent(type="text", text=_text(view(self.failure)))])
            problem = self.failure.message
            if not problem.startswith("agentseat"):  # "agentseat is not ready: agentseat is not set up" says it twice
                problem = f"{self.headline}: {problem}"
            return error_result(problem, f"{fix_of(self.failure)}; then {RESTART}")
        try:
            args = tool.args.model_validate(arguments or {})
        except ValidationError as exc:
            return error_result(f"invalid arguments for {name}: {_describe(exc)}",
                                "call it again with arguments that match the tool's input schema")
        try:
            value = await tool.run(args)
        except AgentSeatError as exc:
            log.info("tool_error", tool=name, error=exc.message)
            if self.on_refusal is not None and _REFUSED.match(exc.message):
                self.on_refusal(name, exc.message)
            return error_result(exc.message, exc.hint)
        except Exception as exc:  # the last line: a bug must not take the server down
            log.exception("tool_crashed", tool=name, error=type(exc).__name__)
            return error_result(f"{name} failed unexpectedly ({type(exc).__name__})",
                                "see the agentseat log on stderr; retrying may not help")
        return _result(value)


def _result(value: Any) -> types.CallToolResult:
    if isinstance(value, ToolImage):  # an image the model can see, its description beside it
        return types.CallToolResult(content=[
            types.TextContent(type="text", text=_text(value.info)),
            types.ImageContent(type="image", data=base64.b64encode(value.data).decode("ascii"),
                               mime_type=value.mime_type)])
    return types.CallToolResult(content=[types.TextContent(type="text", text=_text(value))])


def build_tools(runtime: Runtime, cursor: EventCursor, channel: ChannelSink | None = None) -> ToolBox:
    def extra_status() -> dict[str, Any]:
        out: dict[str, Any] = {"tools_cursor": cursor.seq}
        if channel is not None:
            out["channel"] = {"connected": channel.connected, "claimant": channel.claimant,
                              "pushed": channel.pushed, "last_pushed_seq": channel.last_pushed_seq,
                              "position": channel.position, "group_policy": channel.group_policy,
                              "not_pushed_group": channel.skipped}
        return out

    box = ToolBox([
        *teams.tools(runtime),
        *teams_actions.tools(runtime),
        *cards.tools(runtime),
        *team_channels.tools(runtime),
        *downloads.tools(runtime),
        *files.tools(runtime),
        *mail.tools(runtime),
        *events.tools(runtime, cursor),
        *identity.tools(runtime, extra_status),
        *memory_tools(runtime),  # issue 15: read_interactions, promises, session_brief
    ], views=identity.failure_views(runtime.settings, extra_status))
    box.on_refusal = lambda tool, reason: runtime.audit.append("refusal", tool, reason=reason)
    return box


def not_ready_tools(settings: Settings | None, failure: AgentSeatError) -> ToolBox:
    """Every tool listed as usual, none able to run: each call says what is wrong and how to fix it."""
    stand_in: Any = NoRuntime(settings)
    listed: list[Tool] = []
    for build in (lambda: teams.tools(stand_in), lambda: teams_actions.tools(stand_in),
                  lambda: cards.tools(stand_in), lambda: team_channels.tools(stand_in), lambda: downloads.tools(stand_in),
                  lambda: files.tools(stand_in), lambda: mail.tools(stand_in),
                  lambda: events.tools(stand_in, EventCursor(stand_in)), lambda: identity.tools(stand_in),
                  lambda: memory_tools(stand_in)):
        try:
            listed += build()
        except Exception as exc:  # a module that needs a live runtime to list its tools: list the rest
            log.debug("tools_not_listed", error=type(exc).__name__)
    box = ToolBox(listed, views=identity.failure_views(settings, None))
    box.fail(failure, "agentseat is not ready")
    return box


def not_ready_prompts(failure: AgentSeatError) -> Prompts:
    """Instructions that tell the model, and through it the user, why nothing works yet."""
    text = (f"agentseat is not ready, so its Teams and mail tools do not work in this session.\n"
            f"Problem: {failure.message}\nFix: {fix_of(failure)}\nThen: {RESTART}.\n"
            "Tell the user this when they ask for Teams or mail; the status tool shows it too.\n")
    return Prompts(instructions=text[:MAX_INSTRUCTIONS], body=text)


def _progress_reporter(ctx: Any) -> progress.Reporter | None:
    """Where long work reports progress: the host's progress token for this call, if it gave one."""
    meta = getattr(ctx, "meta", None) or {}
    token = meta.get("progress_token", meta.get("progressToken")) if isinstance(meta, dict) else None
    if token is None:
        return None

    async def send(done: float, total: float | None, message: str) -> None:
        await ctx.session.send_progress_notification(token, done, total, message,
                                                     related_request_id=getattr(ctx, "request_id", None))

    return send


def build_server(runtime: Runtime | None, prompts: Prompts, *, channel: ChannelSink | None = None,
                 cursor: EventCursor | None = None, box: ToolBox | None = None) -> Server[Any]:
    """The MCP server for `runtime` (or for `box` alone); pass `channel` to push inbox events once a
    session is initialized. `instructions` are the short prompts; `agent_body` is the whole body."""
    if box is None:
        assert runtime is not None, "build_server needs a runtime or a box"
        cursor = cursor or EventCursor(runtime)
        box = build_tools(runtime, cursor, channel)

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=box.listing())

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        with progress.reporting(_progress_reporter(ctx)):
            return await box.call(params.name, params.arguments)

    prompt = types.Prompt(name=PROMPT_NAME, description="Who the agent is, its sponsors, its channel discipline "
                          "and its defences against injected instructions.")

    async def list_prompts(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[prompt])

    async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        if params.name != PROMPT_NAME:
            raise MCPError(types.INVALID_PARAMS, f"unknown prompt {params.name!r}; the only prompt is {PROMPT_NAME!r}")
        return types.GetPromptResult(description=prompt.description, messages=[
            types.PromptMessage(role="user", content=types.TextContent(type="text", text=prompts.body))])

    server: Server[Any] = Server(
        SERVER_NAME, version=__version__, instructions=prompts.instructions,
        on_list_tools=list_tools, on_call_tool=call_tool, on_list_prompts=list_prompts, on_get_prompt=get_prompt,
    )
    if channel is not None:
        async def on_initialized(ctx: Any, params: types.NotificationParams) -> None:
            # Runs once the runner has marked the connection initialized: pushes now have a reader.
            await channel.on_initialized(ctx.session)

        server.add_notification_handler("notifications/initialized", types.NotificationParams, on_initialized)
    return server


def initialization_options(server: Server[Any]) -> Any:
    # The permission capability is declared exactly when something answers it (tools/permission.py).
    relayed = server.get_notification_handler(PERMISSION_REQUEST) is not None
    experimental = {**CHANNEL_CAPABILITY, **(PERMISSION_CAPABILITY if relayed else {})}
    return server.create_initialization_options(experimental_capabilities=experimental)


def _find_error(exc: BaseException) -> AgentSeatError | None:
    if isinstance(exc, AgentSeatError):
        return exc
    if isinstance(exc, BaseExceptionGroup):  # task groups wrap errors in groups
        for inner in exc.exceptions:
            if (found := _find_error(inner)) is not None:
                return found
    return None


def _agentseat_error(exc: BaseException) -> AgentSeatError:
    """The AgentSeatError inside `exc`, or a generic one that points at the log."""
    return _find_error(exc) or AgentSeatError(f"the runtime crashed ({type(exc).__name__})",
                                              hint="see the agentseat log on stderr")


async def _speak(server: Server[Any], *, beside: Callable[[], Awaitable[None]] | None = None) -> None:
    """Serve MCP on stdio until the host closes stdin, with `beside` running in the same task group."""
    # serve_loop speaks only the handshake (initialize) era: with Server.run() an auto-negotiating
    # host lands on the 2026-07-28 era, where experimental capabilities and
    # notifications/initialized never arrive, and the channel is dead (python-ecosystem §2).
    options = initialization_options(server)
    with claimed_stdout() as wire:
        async with stdio_server(stdout=wire) as (read, sdk_write), server.lifespan(server) as state:  # type: ignore[arg-type]
            await sdk_write.aclose()  # ours writes instead (tools/stdout.py); the SDK's writer ends at once
            write = WireStream(wire)
            async with anyio.create_task_group() as tg:
                if beside is not None:
                    tg.start_soon(beside)
                await serve_loop(server, read, write, lifespan_state=state, init_options=options)  # type: ignore[arg-type]
                log.info("mcp_stdin_closed")
                tg.cancel_scope.cancel()


async def serve_not_ready(settings: Settings | None, failure: AgentSeatError) -> None:
    """Answer `initialize` and every tool call with why agentseat cannot work, until stdin closes."""
    box = not_ready_tools(settings, failure)
    log.info("mcp_serving_not_ready", tools=len(box.tools))
    await _speak(build_server(None, not_ready_prompts(failure), box=box))


async def serve(settings: Settings, prompts: Prompts) -> None:
    """Serve MCP on stdio and run the runtime, until the host closes stdin.

    `prompts` come from the preflight (`preflight.check`), which already found the settings
    complete and the key readable; whatever fails later reaches the tools as `box.failure`.
    """
    from ..runtime.app import Runtime

    try:
        runtime = Runtime(settings)
    except AgentSeatError as exc:
        log.error("serve_not_ready", problem=exc.message, fix=fix_of(exc))
        await serve_not_ready(settings, exc)
        return
    channel = ChannelSink(group_policy=settings.group_policy)
    relay = PermissionRelay.for_settings(settings)  # None when AGENTSEAT_PERMISSION_RELAY=0
    cursor = EventCursor(runtime)
    box = build_tools(runtime, cursor, channel)
    server = build_server(runtime, prompts, channel=channel, cursor=cursor, box=box)
    if relay is not None:  # installed before the options are made: the capability follows the handler
        relay.install(server)

    async def watch_first_token() -> None:
        # Poll mode keeps retrying an unreachable tenant without stopping, so the runtime alone
        # would never say why nothing arrives. Until the first token, a token failure is the
        # server's problem: status and whoami name it, and it clears once a token comes.
        backoff = 1.0
        while not box.stopped:
            try:
                await runtime.tokens.get()
            except TokenError as exc:
                if box.failure is None:
                    log.error("serve_not_ready", problem=exc.message, fix=fix_of(exc))
                box.fail(exc, "agentseat cannot get a token", passing=True)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            box.pass_failure()
            return

    async def run_runtime() -> None:
        try:
            await runtime.run([channel, *([relay] if relay is not None else [])])
        except Exception as exc:
            # Keep serving: every tool call now says why the runtime stopped and what to do,
            # which a host shows; a vanished server would only say "disconnected".
            box.fail(_agentseat_error(exc))
            assert box.failure is not None
            log.error("runtime_stopped", error=box.failure.message, hint=box.failure.hint,
                      exc_info=not isinstance(exc, AgentSeatError))

    async def beside() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_first_token)
            tg.start_soon(run_runtime)

    try:
        # Both positions are taken before the runtime stores anything, so nothing is skipped.
        await channel.prepare(runtime.inbox)
        await cursor.start()
        log.info("mcp_serving", mode=settings.mode, tunnel=settings.tunnel)
        await _speak(server, beside=beside)
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.aclose()  # also done by Runtime.run; closing twice is harmless
