"""The `send_card` templates: a name and a few fields make an Adaptive Card 1.5.

They cover what entrabot's cards did: a status line with facts, a task list with ticks, and a
build result with a link. Each template says which fields it takes; a missing required field or
an unknown one is an error that names it, so the model never sends a half-filled card.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
#: status / result words -> the TextBlock colour Teams shows them in.
_GOOD = {"ok", "done", "green", "passed", "pass", "success", "succeeded", "complete", "completed", "healthy"}
_BAD = {"failed", "fail", "failure", "error", "red", "broken", "down", "cancelled", "canceled"}


class TemplateError(ValueError):
    pass


def _colour(word: str) -> str:
    w = word.strip().lower()
    return "good" if w in _GOOD else "attention" if w in _BAD else "warning"


def _card(body: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    card: dict[str, Any] = {"$schema": SCHEMA, "type": "AdaptiveCard", "version": "1.5", "body": body}
    if actions:
        card["actions"] = actions
    return card


def _title(text: str) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "weight": "Bolder", "size": "Medium", "wrap": True}


def _facts(facts: Any, name: str) -> list[dict[str, Any]]:
    if facts is None:
        return []
    if not isinstance(facts, dict):
        raise TemplateError(f"fields.{name} must be an object of label: value")
    return [{"type": "FactSet", "facts": [{"title": str(k), "value": str(v)} for k, v in facts.items()]}] if facts \
        else []


def _link(url: Any, label: str) -> list[dict[str, Any]]:
    if url is None:
        return []
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise TemplateError("fields.url must be an http(s) URL")
    return [{"type": "Action.OpenUrl", "title": label, "url": url}]


def status(f: dict[str, Any]) -> dict[str, Any]:
    body = [_title(str(f["title"])),
            {"type": "TextBlock", "text": str(f["status"]), "color": _colour(str(f["status"])), "weight": "Bolder"}]
    if f.get("detail"):
        body.append({"type": "TextBlock", "text": str(f["detail"]), "wrap": True})
    return _card(body + _facts(f.get("facts"), "facts"), _link(f.get("url"), "Open"))


def task_list(f: dict[str, Any]) -> dict[str, Any]:
    tasks = f["tasks"]
    if not isinstance(tasks, list) or not tasks:
        raise TemplateError("fields.tasks must be a non-empty list of {\"title\", \"done\"} or strings")
    rows = []
    for i, task in enumerate(tasks):
        if isinstance(task, str):
            title, done = task, False
        elif isinstance(task, dict) and isinstance(task.get("title"), str):
            title, done = task["title"], bool(task.get("done"))
        else:
            raise TemplateError(f"fields.tasks[{i}] must be a string or {{\"title\": ..., \"done\": true|false}}")
        rows.append({"type": "TextBlock", "text": f"{'✅' if done else '⬜'} {title}", "wrap": True,
                     "spacing": "Small", **({"isSubtle": True} if done else {})})
    finished = sum(1 for t in tasks if isinstance(t, dict) and t.get("done"))
    return _card([_title(str(f["title"])),
                  {"type": "TextBlock", "text": f"{finished} of {len(tasks)} done", "isSubtle": True}, *rows])


def build_result(f: dict[str, Any]) -> dict[str, Any]:
    result = str(f["result"])
    facts = {k: f[k] for k in ("branch", "commit", "duration") if f.get(k) is not None}
    body = [_title(str(f["name"])),
            {"type": "TextBlock", "text": result.upper(), "color": _colour(result), "weight": "Bolder"}]
    if f.get("summary"):
        body.append({"type": "TextBlock", "text": str(f["summary"]), "wrap": True})
    return _card(body + _facts(facts, "build"), _link(f.get("url"), "View build"))


#: name -> (required fields, optional fields, builder)
TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "status": (("title", "status"), ("detail", "facts", "url"), status),
    "task_list": (("title", "tasks"), (), task_list),
    "build_result": (("name", "result"), ("summary", "branch", "commit", "duration", "url"), build_result),
}


def describe() -> str:
    return "; ".join(f"{name}: {', '.join(req)}" + (f" (optional {', '.join(opt)})" if opt else "")
                     for name, (req, opt, _) in TEMPLATES.items())


def render(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The card template `name` makes from `fields`; TemplateError names a missing or unknown field."""
    if name not in TEMPLATES:
        raise TemplateError(f"no template {name!r}; use one of {', '.join(TEMPLATES)}")
    required, optional, build = TEMPLATES[name]
    missing = [k for k in required if fields.get(k) in (None, "", [])]
    unknown = sorted(set(fields) - set(required) - set(optional))
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise TemplateError(f"template {name} fields: {'; '.join(parts)}")
    return build(fields)
