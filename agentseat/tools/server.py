"""The MCP stdio server: tools, the body prompt, the Claude Code channel, and the serve loop.

It owns the MCP surface: which tools and prompts exist, how a tool call becomes a
result or a tool error, the `claude/channel` capability, and running the protocol
beside the runtime in one task group. stdout carries only the protocol (mcp's
`stdio_server()` diverts fd 1 to stderr while it serves; our logs go to stderr).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
import structlog
from mcp.server import Server
from mcp.server.runner import serve_loop
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from .. import __version__
from ..errors import AgentSeatError
from ..prompts.loader import load_body
from . import events, identity, mail, teams
from .base import Tool
from .channel import ChannelSink
from .events import EventCursor
from .permission import CAPABILITY as PERMISSION_CAPABILITY
from .permission import REQUEST_METHOD as PERMISSION_REQUEST
from .permission import PermissionRelay
from .stdout import claimed_stdout

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


class ToolBox:
    """The registered tools and the one place a call is validated, run, and mapped to a result."""

    def __init__(self, tools: list[Tool]) -> None:
        self.tools = {t.name: t for t in tools}
        self.failure: AgentSeatError | None = None  # set when the runtime under the tools has stopped

    def listing(self) -> list[types.Tool]:
        return [types.Tool(name=t.name, description=t.description, input_schema=t.input_schema(),
                           annotations=types.ToolAnnotations(read_only_hint=t.read_only))
                for t in self.tools.values()]

    async def call(self, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
        """Every failure is a tool error whose message says what to do; nothing escapes as a crash."""
        tool = self.tools.get(name)
        if tool is None:
            return error_result(f"there is no tool {name!r}", f"use one of: {', '.join(sorted(self.tools))}")
        if self.failure is not None and name != "status":
            return error_result(f"the agentseat runtime has stopped: {self.failure.message}",
                                self.failure.hint or "fix the cause, then restart the MCP server")
        try:
            args = tool.args.model_validate(arguments or {})
        except ValidationError as exc:
            return error_result(f"invalid arguments for {name}: {_describe(exc)}",
                                "call it again with arguments that match the tool's input schema")
        try:
            value = await tool.run(args)
        except AgentSeatError as exc:
            log.info("tool_error", tool=name, error=exc.message)
            return error_result(exc.message, exc.hint)
        except Exception as exc:  # the last line: a bug must not take the server down
            log.exception("tool_crashed", tool=name, error=type(exc).__name__)
            return error_result(f"{name} failed unexpectedly ({type(exc).__name__})",
                                "see the agentseat log on stderr; retrying may not help")
        return types.CallToolResult(content=[types.TextContent(type="text", text=_text(value))])


def build_tools(runtime: Runtime, cursor: EventCursor, channel: ChannelSink | None = None) -> ToolBox:
    box: ToolBox

    def extra_status() -> dict[str, Any]:
        out: dict[str, Any] = {"tools_cursor": cursor.seq}
        if channel is not None:
            out["channel"] = {"connected": channel.connected, "claimant": channel.claimant,
                              "pushed": channel.pushed, "last_pushed_seq": channel.last_pushed_seq,
                              "position": channel.position}
        if box.failure is not None:
            out["runtime_error"] = {"message": box.failure.message, "hint": box.failure.hint}
        return out

    box = ToolBox([
        *teams.tools(runtime),
        *mail.tools(runtime),
        *events.tools(runtime, cursor),
        *identity.tools(runtime, extra_status),
    ])
    return box


def build_server(runtime: Runtime, instructions: str, *, channel: ChannelSink | None = None,
                 cursor: EventCursor | None = None, box: ToolBox | None = None) -> Server[Any]:
    """The MCP server for `runtime`; pass `channel` to push inbox events once a session is initialized."""
    cursor = cursor or EventCursor(runtime)
    box = box or build_tools(runtime, cursor, channel)

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=box.listing())

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        return await box.call(params.name, params.arguments)

    prompt = types.Prompt(name=PROMPT_NAME, description="Who the agent is, its sponsors, its channel discipline "
                          "and its defences against injected instructions.")

    async def list_prompts(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[prompt])

    async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        if params.name != PROMPT_NAME:
            raise MCPError(types.INVALID_PARAMS, f"unknown prompt {params.name!r}; the only prompt is {PROMPT_NAME!r}")
        return types.GetPromptResult(description=prompt.description, messages=[
            types.PromptMessage(role="user", content=types.TextContent(type="text", text=instructions))])

    server: Server[Any] = Server(
        SERVER_NAME, version=__version__, instructions=instructions,
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


async def serve(settings: Settings) -> None:
    """Serve MCP on stdio and run the runtime, until the host closes stdin."""
    from ..runtime.app import Runtime

    instructions = load_body(settings)  # a bad persona file fails here, before anything is opened
    runtime = Runtime(settings)
    channel = ChannelSink()
    relay = PermissionRelay.for_settings(settings)  # None when AGENTSEAT_PERMISSION_RELAY=0
    cursor = EventCursor(runtime)
    box = build_tools(runtime, cursor, channel)
    server = build_server(runtime, instructions, channel=channel, cursor=cursor, box=box)
    if relay is not None:  # installed before the options are made: the capability follows the handler
        relay.install(server)
    options = initialization_options(server)

    async def run_runtime() -> None:
        try:
            await runtime.run([channel, *([relay] if relay is not None else [])])
        except Exception as exc:
            # Keep serving: every tool call now says why the runtime stopped and what to do,
            # which a host shows; a vanished server would only say "disconnected".
            box.failure = _agentseat_error(exc)
            log.error("runtime_stopped", error=box.failure.message, hint=box.failure.hint,
                      exc_info=not isinstance(exc, AgentSeatError))

    try:
        # Both positions are taken before the runtime stores anything, so nothing is skipped.
        await channel.prepare(runtime.inbox)
        await cursor.start()
        # serve_loop speaks only the handshake (initialize) era: with Server.run() an auto-negotiating
        # host lands on the 2026-07-28 era, where experimental capabilities and
        # notifications/initialized never arrive, and the channel is dead (python-ecosystem §2).
        with claimed_stdout() as wire:
            async with stdio_server(stdout=wire) as (read, write), server.lifespan(server) as state:  # type: ignore[arg-type]
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run_runtime)
                    log.info("mcp_serving", mode=settings.mode, tunnel=settings.tunnel)
                    await serve_loop(server, read, write, lifespan_state=state, init_options=options)
                    log.info("mcp_stdin_closed")
                    tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.aclose()  # also done by Runtime.run; closing twice is harmless
