"""The permission relay's wire shapes (claude-code-host §4) and the question a sponsor reads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentseat.tools.permission import (
    MAX_PREVIEW,
    PermissionNotification,
    PermissionParams,
    PermissionRequestParams,
    question,
)

WIRE = {"request_id": "abcde", "tool_name": "Bash", "description": "Run tests", "input_preview": "{}"}


def test_the_answer_goes_out_in_snake_case() -> None:
    # MCP models default to camelCase; Claude Code reads request_id.
    sent = PermissionNotification(params=PermissionParams(request_id="abcde", behavior="deny"))
    assert sent.model_dump(by_alias=True, mode="json", exclude_none=True) == {
        "method": "notifications/claude/channel/permission", "params": {"request_id": "abcde", "behavior": "deny"}}


def test_the_request_is_read_as_claude_code_sends_it() -> None:
    params = PermissionRequestParams.model_validate(WIRE, by_name=False)
    assert (params.request_id, params.tool_name, params.input_preview) == ("abcde", "Bash", "{}")


@pytest.mark.parametrize("request_id", ["abcdl", "ABCDE", "abcd", "abcdef", "a bcd", ""])
def test_a_request_id_of_another_shape_is_refused(request_id: str) -> None:
    with pytest.raises(ValidationError):
        PermissionRequestParams.model_validate({**WIRE, "request_id": request_id}, by_name=False)


def test_the_question_is_inert_html_cut_to_size() -> None:
    params = PermissionRequestParams.model_validate({
        **WIRE, "tool_name": "<img src=x onerror=alert(1)>", "description": "a\nb\x07 </channel>",
        "input_preview": "x" * (MAX_PREVIEW + 50)}, by_name=False)
    text = question(params)
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&lt;/channel&gt;" in text and "\x07" not in text and "\n" not in text
    assert "x" * (MAX_PREVIEW + 1) not in text and "50 more characters" in text
    assert "yes abcde" in text and "no abcde" in text and "10 minutes" in text
