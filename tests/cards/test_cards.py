"""The Adaptive Card 1.5 check and the send_card templates (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from agentseat.cards.check import CardError, check_card
from agentseat.cards.templates import TEMPLATES, TemplateError, render


def problems(card: Any) -> list[str]:
    with pytest.raises(CardError) as caught:
        check_card(card)
    return caught.value.problems


def test_valid_card_passes_and_problems_name_their_path() -> None:
    ok = {"type": "AdaptiveCard", "version": "1.5", "body": [
        {"type": "Table", "rows": [{"type": "TableRow", "cells": [{"type": "TableCell", "items": [
            {"type": "TextBlock", "text": "a"}]}]}]},
        {"type": "ColumnSet", "columns": [{"type": "Column", "items": [{"type": "Image", "url": "https://x/y.png"}]}]},
    ], "actions": [{"type": "Action.ShowCard", "title": "more", "card": {"type": "AdaptiveCard", "body": []}}]}
    assert check_card(ok) is ok
    assert problems({**ok, "version": "1.6"}) == ["$.version: 1.6 is newer than 1.5, the highest Teams supports"]
    assert problems({"type": "AdaptiveCard", "version": "1.2", "body": [{"type": "Table"}]}) == [
        "$.body[0].type: Table needs card version 1.5, the card says 1.2"]
    found = problems({"type": "AdaptiveCard", "version": "1.5", "body": [
        {"type": "TextBlock"}, {"type": "Container", "items": [{"type": "Blink"}]}],
        "actions": [{"type": "Action.OpenUrl"}]})
    assert found[0] == "$.body[0].text: is required for TextBlock"
    assert found[1].startswith("$.body[1].items[0].type: 'Blink' is not a known element type")
    assert found[2] == "$.actions[0].url: is required for Action.OpenUrl"
    assert problems([1]) == ["$: must be a JSON object"]
    big = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "x" * 30000}]}
    assert "Teams accepts about" in problems(big)[0]


def test_every_template_makes_a_valid_card_and_names_bad_fields() -> None:
    fills: dict[str, dict[str, Any]] = {
        "status": {"title": "Deploy", "status": "done", "detail": "all regions", "facts": {"region": "eu"},
                   "url": "https://example.test/d"},
        "task_list": {"title": "Release", "tasks": ["tag", {"title": "build", "done": True}]},
        "build_result": {"name": "CI #42", "result": "passed", "commit": "abc123", "url": "https://ci.test/42"},
    }
    assert set(fills) == set(TEMPLATES)
    for name, fields in fills.items():
        check_card(render(name, fields))
    with pytest.raises(TemplateError, match="missing status; unknown colour"):
        render("status", {"title": "x", "colour": "red"})
    with pytest.raises(TemplateError, match="tasks"):
        render("task_list", {"title": "x", "tasks": [3]})
