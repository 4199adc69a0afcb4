"""A tool call becomes a result or a tool error that says what to do; never a crash."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agentseat.errors import AgentSeatError, GraphError
from agentseat.tools.base import Args, Tool
from agentseat.tools.server import ToolBox


class EchoArgs(Args):
    text: str = Field(min_length=1)
    times: int = Field(1, ge=1, le=3)


async def _echo(args: EchoArgs) -> dict[str, Any]:
    return {"echo": args.text * args.times}


async def _graph_fails(args: EchoArgs) -> None:
    raise GraphError("POST /chats/x/messages -> 403 Forbidden", status=403, hint="run `agentseat setup --grant`")


async def _bug(args: EchoArgs) -> None:
    raise KeyError("oops")


BOX = ToolBox([Tool("echo", "Echo.", EchoArgs, _echo), Tool("graph", "Fails.", EchoArgs, _graph_fails),
               Tool("bug", "Has a bug.", EchoArgs, _bug)])


def _text(result: Any) -> str:
    return result.content[0].text  # type: ignore[no-any-return]


async def test_valid_call_returns_json_text() -> None:
    result = await BOX.call("echo", {"text": "ab", "times": 2})
    assert not result.is_error and '"echo": "abab"' in _text(result)


async def test_invalid_arguments_are_a_tool_error_naming_the_field() -> None:
    for args in ({}, {"text": "a", "times": 9}, {"text": "a", "extra": 1}):
        result = await BOX.call("echo", args)
        assert result.is_error and "invalid arguments for echo" in _text(result) and "what to do" in _text(result)
    assert "times" in _text(await BOX.call("echo", {"text": "a", "times": 9}))
    assert "extra" in _text(await BOX.call("echo", {"text": "a", "extra": 1}))


async def test_agentseat_errors_carry_their_hint() -> None:
    text = _text(result := await BOX.call("graph", {"text": "a"}))
    assert result.is_error and "403 Forbidden" in text and "agentseat setup --grant" in text


async def test_unexpected_exceptions_do_not_escape() -> None:
    result = await BOX.call("bug", {"text": "a"})
    assert result.is_error and "KeyError" in _text(result)


async def test_unknown_tool_lists_the_real_ones() -> None:
    result = await BOX.call("nope", {})
    assert result.is_error and "bug, echo, graph" in _text(result)


def test_schemas_are_json_schema_objects_without_titles() -> None:
    [tool, *_] = BOX.listing()
    assert tool.input_schema["type"] == "object" and tool.input_schema["required"] == ["text"]
    assert tool.input_schema["additionalProperties"] is False and "title" not in tool.input_schema


def test_the_listing_is_built_once() -> None:
    # tools/list builds a pydantic JSON schema per tool: the first call pays for it, later ones reuse it.
    schemas = 0

    class Counted(EchoArgs):
        @classmethod
        def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
            nonlocal schemas
            schemas += 1
            return super().model_json_schema(*args, **kwargs)

    box = ToolBox([Tool("echo", "Echo.", Counted, _echo), Tool("again", "Echo.", Counted, _echo)])
    first = box.listing()
    assert box.listing() == first and [t.name for t in first] == ["echo", "again"] and schemas == 2


def _failing_box() -> ToolBox:
    return ToolBox([Tool("echo", "Echo.", EchoArgs, _echo)],
                   views={"status": lambda failure: {"ready": False, "problem": failure.message}})


async def test_while_failed_every_tool_explains_and_a_view_diagnoses() -> None:
    box = _failing_box()
    box.tools["status"] = Tool("status", "Status.", EchoArgs, _echo)
    box.fail(AgentSeatError("the key cannot be read", hint="set AGENTSEAT_KEY_PASSPHRASE"))
    echo = await box.call("echo", {"text": "a"})
    assert echo.is_error and "the key cannot be read" in _text(echo) and "AGENTSEAT_KEY_PASSPHRASE" in _text(echo)
    status = await box.call("status", {})
    assert not status.is_error and '"ready": false' in _text(status)


async def test_a_passing_failure_clears_but_never_hides_a_lasting_one() -> None:
    box = _failing_box()
    box.fail(AgentSeatError("no token yet"), "agentseat cannot get a token", passing=True)
    assert (await box.call("echo", {"text": "a"})).is_error
    box.pass_failure()
    assert not (await box.call("echo", {"text": "a"})).is_error

    box.fail(AgentSeatError("the runtime crashed"))
    box.fail(AgentSeatError("no token yet"), "agentseat cannot get a token", passing=True)
    box.pass_failure()
    text = _text(result := await box.call("echo", {"text": "a"}))
    assert result.is_error and "runtime has stopped: the runtime crashed" in text
