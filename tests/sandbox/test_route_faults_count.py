"""Graph faults for the next N calls of a route (`count`), with 403 and 404 among them: how a
test shows a grant or an object that has not replicated yet, then has."""

from __future__ import annotations

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra.tokens import user_graph_token
from tests.sandbox._graph import call


async def test_a_403_for_the_next_two_calls_then_graph_answers_again(sandbox: Sandbox) -> None:
    fault = {"graph": [{"route": "GET /me/chats", "status": 403, "count": 2}]}
    status, body, _ = await call(sandbox, "POST", "/_sandbox/faults", body=fault)
    assert status == 200 and body["graph"][0]["count"] == 2 and body["graph"][0]["rate"] == 1.0
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    answers = [await call(sandbox, "GET", "/v1.0/me/chats", token) for _ in range(3)]
    assert [a[0] for a in answers] == [403, 403, 200]
    assert answers[0][1]["error"]["code"] == "Forbidden"
    _, current, _ = await call(sandbox, "GET", "/_sandbox/faults")
    assert current["graph"][0]["count"] == 0  # spent
    assert (await call(sandbox, "GET", "/_sandbox/stats"))[1]["throttled"]["fault 403"] == 2


async def test_a_404_for_the_next_call_only_touches_matching_routes(sandbox: Sandbox) -> None:
    await call(sandbox, "POST", "/_sandbox/faults", body={"graph": [{"route": "GET /users/*", "status": 404,
                                                                      "count": 1}]})
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    assert (await call(sandbox, "GET", "/v1.0/me", token))[0] == 200  # another route: untouched
    status, body, _ = await call(sandbox, "GET", f"/v1.0/users/{sandbox.role('agent_user')}", token)
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"
    assert (await call(sandbox, "GET", f"/v1.0/users/{sandbox.role('agent_user')}", token))[0] == 200


async def test_a_count_that_is_not_a_whole_number_is_400_and_names_it(sandbox: Sandbox) -> None:
    for bad in (0, -1, 1.5, "two", True):
        status, body, _ = await call(sandbox, "POST", "/_sandbox/faults",
                                     body={"graph": [{"route": "*", "status": 403, "count": bad}]})
        assert status == 400 and "count" in str(body["error"]), bad
