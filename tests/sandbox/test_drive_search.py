"""Finding files over real HTTPS: Microsoft Search (the sharedWithMe/recent replacement), drive search,
children paging, and the deprecated sharedWithMe and recent."""

from __future__ import annotations

from typing import Any

from agentseat.sandbox.app import Sandbox
from tests.sandbox._drive import ADA, AGENT, GRACE, put_file, token
from tests.sandbox._graph import call


async def _search(sb: Sandbox, who: str, query: str, **paging: int) -> tuple[int, Any]:
    status, body, _ = await call(sb, "POST", "/v1.0/search/query", token(sb, who), body={
        "requests": [{"entityTypes": ["driveItem"], "query": {"queryString": query}, **paging}]})
    return status, body


def _names(body: Any) -> list[str]:
    return [h["resource"]["name"] for c in body["value"][0]["hitsContainers"] for h in c["hits"]]


async def test_search_finds_a_file_shared_with_the_agent_by_name_and_text_and_nothing_it_cannot_open(
        sandbox: Sandbox) -> None:
    shared = await put_file(sandbox, ADA, "Plans/launch-plan.txt", b"The launch date is the Zanzibar milestone.",
                            share_with=[AGENT])
    await put_file(sandbox, ADA, "Private/salaries.txt", b"Zanzibar bonus pool")  # not shared with the agent
    await put_file(sandbox, AGENT, "mine.md", b"my own zanzibar notes")
    await put_file(sandbox, GRACE, "grace.txt", b"zanzibar")  # Grace's, never shared
    status, body = await _search(sandbox, AGENT, "zanzibar")
    assert status == 200, body
    result = body["value"][0]
    assert result["searchTerms"] == ["zanzibar"]
    container = result["hitsContainers"][0]
    assert sorted(_names(body)) == ["launch-plan.txt", "mine.md"] and container["total"] == 2
    assert container["moreResultsAvailable"] is False
    hit = next(h for h in container["hits"] if h["resource"]["name"] == "launch-plan.txt")
    resource = hit["resource"]
    assert resource["@odata.type"] == "#microsoft.graph.driveItem" and hit["hitId"] == shared["item_id"]
    assert resource["parentReference"]["driveId"] == shared["drive_id"] and resource["webUrl"] == shared["web_url"]
    assert resource["createdBy"]["user"]["email"] == ADA  # how a client tells a colleague's file from its own
    assert "<c0>Zanzibar</c0>" in hit["summary"]
    # By a word of the name, by a prefix, a phrase, and property restrictions.
    for query, expected in (("launch", ["launch-plan.txt"]), ("laun*", ["launch-plan.txt"]),
                            ('"launch date"', ["launch-plan.txt"]), ("filetype:md", ["mine.md"]),
                            ("launch OR notes", ["launch-plan.txt", "mine.md"]), ("launc", []),
                            ("zanzibar filetype:txt", ["launch-plan.txt"])):
        status, body = await _search(sandbox, AGENT, query)
        assert status == 200 and sorted(_names(body)) == expected, query
    # Ada sees her own files (the agent's are not shared with her).
    status, body = await _search(sandbox, ADA, "zanzibar")
    assert sorted(_names(body)) == ["launch-plan.txt", "salaries.txt"]


async def test_search_pages_with_from_and_size_and_refuses_what_it_does_not_support(sandbox: Sandbox) -> None:
    for n in range(5):
        await put_file(sandbox, AGENT, f"Batch/report-{n}.txt", b"quarterly report")
    seen: list[str] = []
    start = 0
    while True:
        status, body = await _search(sandbox, AGENT, "quarterly", **{"from": start, "size": 2})
        assert status == 200
        container = body["value"][0]["hitsContainers"][0]
        assert container["total"] == 5
        seen += [h["resource"]["name"] for h in container["hits"]]
        assert [h["rank"] for h in container["hits"]] == list(range(start + 1, start + 1 + len(container["hits"])))
        if not container["moreResultsAvailable"]:
            break
        start += 2
    assert sorted(seen) == [f"report-{n}.txt" for n in range(5)]
    status, body, _ = await call(sandbox, "POST", "/v1.0/search/query", token(sandbox, AGENT), body={"requests": [{
        "entityTypes": ["driveItem"], "query": {"queryString": "report"},
        "sortProperties": [{"name": "name", "isDescending": False}]}]})
    assert _names(body) == [f"report-{n}.txt" for n in range(5)]  # unsorted, the newest change comes first
    status, body = await _search(sandbox, AGENT, "report")
    assert _names(body) == [f"report-{n}.txt" for n in (4, 3, 2, 1, 0)]
    status, body = await _search(sandbox, AGENT, "*")
    assert "Batch" in _names(body)  # folders are driveItems too
    status, body = await _search(sandbox, AGENT, "* isDocument:true")
    assert "Batch" not in _names(body) and len(_names(body)) == 5
    agent = token(sandbox, AGENT)
    for request in ({"entityTypes": ["message"], "query": {"queryString": "x"}},
                    {"entityTypes": ["driveItem"], "query": {"queryString": ""}},
                    {"entityTypes": ["driveItem"], "query": {"queryString": "x"}, "size": 501},
                    {"entityTypes": ["driveItem"], "query": {"queryString": "x"}, "sortProperties": [{"name": "colour"}]}):
        status, body, _ = await call(sandbox, "POST", "/v1.0/search/query", agent, body={"requests": [request]})
        assert status == 400 and body["error"]["code"] == "BadRequest", request
    one = {"entityTypes": ["driveItem"], "query": {"queryString": "x"}}
    status, body, _ = await call(sandbox, "POST", "/v1.0/search/query", agent, body={"requests": [one, one]})
    assert status == 400 and "one searchRequest" in body["error"]["message"]
    # The docs give 500 and 1000 as the largest page; the switchboard picks.
    await call(sandbox, "POST", "/_sandbox/behaviour", body={"search_max_size": 1000})
    status, _ = await _search(sandbox, AGENT, "x", size=1000)
    assert status == 200
    status, body, _ = await call(sandbox, "POST", "/v1.0/search/query", token(sandbox, AGENT, ["Files.ReadWrite"]),
                                 body={"requests": [{"entityTypes": ["driveItem"], "query": {"queryString": "x"}}]})
    assert status == 403  # search-query needs Files.Read.All or Sites.Read.All


async def test_drive_search_children_paging_and_the_deprecated_listings(sandbox: Sandbox) -> None:
    for n in range(5):
        await put_file(sandbox, AGENT, f"Docs/spec-{n}.md", b"# spec")
    shared = await put_file(sandbox, ADA, "budget.txt", b"spec of the budget", share_with=[AGENT])
    agent = token(sandbox, AGENT)
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/drive/root/search(q='spec')", agent)
    assert status == 200 and sorted(i["name"] for i in body["value"]) == [f"spec-{n}.md" for n in range(5)]
    assert all("searchResult" in i for i in body["value"])
    # /me/drive/search also looks at what is shared with the caller, as a remoteItem.
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/drive/search(q='spec')", agent)
    remote = [i for i in body["value"] if "remoteItem" in i]
    assert [r["remoteItem"]["id"] for r in remote] == [shared["item_id"]]
    assert remote[0]["remoteItem"]["parentReference"]["driveId"] == shared["drive_id"]
    # Children in pages of $top, followed by @odata.nextLink until there is none.
    names: list[str] = []
    link: str | None = "/v1.0/me/drive/root:/Docs:/children?$top=2"
    pages = 0
    while link:
        status, body, _ = await call(sandbox, "GET", link, agent)
        assert status == 200 and len(body["value"]) <= 2
        names += [i["name"] for i in body["value"]]
        link = body.get("@odata.nextLink")
        pages += 1
    assert names == [f"spec-{n}.md" for n in range(5)] and pages == 3
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/drive/root/children?$skiptoken=forged", agent)
    assert status == 400
    # sharedWithMe (deprecated, still answering): the file Ada shared, as a remoteItem.
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/drive/sharedWithMe", agent)
    assert status == 200 and [i["remoteItem"]["name"] for i in body["value"]] == ["budget.txt"]
    assert body["value"][0]["remoteItem"]["parentReference"]["driveId"] == shared["drive_id"]
    # recent (deprecated): stopped returning data after November 2026.
    status, body, _ = await call(sandbox, "POST", "/_sandbox/clock", body={"advance_seconds": 0})
    assert body["clock"] >= "2026-12"
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/drive/recent", agent)
    assert status == 200 and body["value"] == []
