"""Adaptive Cards for Teams: a structural check of the 1.5 subset, and the cards the templates make.

Teams documents card schema 1.5 as the highest it supports for bot and message cards
("Adaptive Cards" in the Teams platform docs). No official 1.5 JSON schema ships in a package
we can install (npm `adaptivecards` 3.0.6, `adaptivecards-templating` 2.3.1,
`adaptivecards-designer` 2.4.4 and `@microsoft/adaptivecards-tools` 1.3.11 hold none), so this
is our own check of what the schema explorer (adaptivecards.io/explorer) lists for 1.5:
the element and action types, their required properties, the version each arrived in, and
Teams' ~28 KB message limit. It is strict (an unknown type is refused, not rendered as a
fallback) and names every problem by its JSON path, so the model can fix the card.
"""

from __future__ import annotations

import json
from typing import Any

SUPPORTED_VERSION = (1, 5)
#: Teams rejects messages over about 28 KB, and a card's JSON is part of the message.
MAX_CARD_BYTES = 28 * 1024
MAX_PROBLEMS = 5

#: element type -> (required properties, version it arrived in), from the schema explorer.
ELEMENTS: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    "TextBlock": (("text",), (1, 0)),
    "Image": (("url",), (1, 0)),
    "Media": (("sources",), (1, 1)),
    "RichTextBlock": (("inlines",), (1, 2)),
    "Container": (("items",), (1, 0)),
    "ColumnSet": ((), (1, 0)),
    "FactSet": (("facts",), (1, 0)),
    "ImageSet": (("images",), (1, 0)),
    "ActionSet": (("actions",), (1, 2)),
    "Table": ((), (1, 5)),
    "Input.Text": (("id",), (1, 0)),
    "Input.Number": (("id",), (1, 0)),
    "Input.Date": (("id",), (1, 0)),
    "Input.Time": (("id",), (1, 0)),
    "Input.Toggle": (("id", "title"), (1, 0)),
    "Input.ChoiceSet": (("id",), (1, 0)),
}
ACTIONS: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    "Action.OpenUrl": (("url",), (1, 0)),
    "Action.Submit": ((), (1, 0)),
    "Action.ShowCard": (("card",), (1, 0)),
    "Action.ToggleVisibility": (("targetElements",), (1, 2)),
    "Action.Execute": ((), (1, 4)),
}


class CardError(ValueError):
    """A card that is not a valid Adaptive Card 1.5; `problems` are "path: what is wrong" lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _version(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    parts = value.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


class _Checker:
    def __init__(self, version: tuple[int, int]) -> None:
        self.version = version
        self.problems: list[str] = []

    def bad(self, path: str, what: str) -> None:
        self.problems.append(f"{path}: {what}")

    def _list(self, parent: dict[str, Any], key: str, path: str) -> list[Any]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(f"{path}.{key}", f"must be an array, not {type(value).__name__}")
            return []
        return value

    def _typed(self, item: Any, path: str, known: dict[str, tuple[tuple[str, ...], tuple[int, int]]],
               what: str) -> str | None:
        if not isinstance(item, dict):
            self.bad(path, f"must be an object ({what})")
            return None
        kind = item.get("type")
        if kind not in known:
            self.bad(f"{path}.type", f"{kind!r} is not a known {what} type; use one of {', '.join(known)}")
            return None
        required, since = known[kind]
        for prop in required:
            if item.get(prop) in (None, "", []):
                self.bad(f"{path}.{prop}", f"is required for {kind}")
        if since > self.version:
            self.bad(f"{path}.type", f"{kind} needs card version {since[0]}.{since[1]}, the card says "
                     f"{self.version[0]}.{self.version[1]}")
        return str(kind)

    def elements(self, items: list[Any], path: str) -> None:
        for i, item in enumerate(items):
            self.element(item, f"{path}[{i}]")

    def element(self, item: Any, path: str) -> None:
        kind = self._typed(item, path, ELEMENTS, "element")
        if kind is None:
            return
        if kind == "TextBlock" and "text" in item and not isinstance(item["text"], str):
            self.bad(f"{path}.text", "must be a string")
        if kind == "Container":
            self.elements(self._list(item, "items", path), f"{path}.items")
        elif kind == "ColumnSet":
            for i, column in enumerate(self._list(item, "columns", path)):
                where = f"{path}.columns[{i}]"
                if not isinstance(column, dict) or column.get("type", "Column") != "Column":
                    self.bad(where, "must be a Column object")
                    continue
                self.elements(self._list(column, "items", where), f"{where}.items")
                self.select_action(column, where)
        elif kind == "FactSet":
            for i, fact in enumerate(self._list(item, "facts", path)):
                if not (isinstance(fact, dict) and isinstance(fact.get("title"), str)
                        and isinstance(fact.get("value"), str)):
                    self.bad(f"{path}.facts[{i}]", "a fact needs string 'title' and 'value'")
        elif kind == "ImageSet":
            for i, image in enumerate(self._list(item, "images", path)):
                self.element({"type": "Image", **image} if isinstance(image, dict) else image,
                             f"{path}.images[{i}]")
        elif kind == "ActionSet":
            self.actions(self._list(item, "actions", path), f"{path}.actions")
        elif kind == "Table":
            for r, row in enumerate(self._list(item, "rows", path)):
                where = f"{path}.rows[{r}]"
                if not isinstance(row, dict):
                    self.bad(where, "must be a TableRow object")
                    continue
                for c, cell in enumerate(self._list(row, "cells", where)):
                    if not isinstance(cell, dict):
                        self.bad(f"{where}.cells[{c}]", "must be a TableCell object")
                        continue
                    self.elements(self._list(cell, "items", f"{where}.cells[{c}]"), f"{where}.cells[{c}].items")
        elif kind == "Input.ChoiceSet":
            for i, choice in enumerate(self._list(item, "choices", path)):
                if not (isinstance(choice, dict) and isinstance(choice.get("title"), str)
                        and isinstance(choice.get("value"), str)):
                    self.bad(f"{path}.choices[{i}]", "a choice needs string 'title' and 'value'")
        if kind in ("Container", "Image"):
            self.select_action(item, path)

    def select_action(self, item: dict[str, Any], path: str) -> None:
        action = item.get("selectAction")
        if action is None:
            return
        kind = self._typed(action, f"{path}.selectAction", ACTIONS, "action")
        if kind == "Action.ShowCard":
            self.bad(f"{path}.selectAction.type", "Action.ShowCard cannot be a selectAction")

    def actions(self, actions: list[Any], path: str) -> None:
        for i, action in enumerate(actions):
            where = f"{path}[{i}]"
            kind = self._typed(action, where, ACTIONS, "action")
            if kind == "Action.ShowCard" and isinstance(action.get("card"), dict):
                self.card(action["card"], f"{where}.card", nested=True)

    def card(self, card: Any, path: str, *, nested: bool = False) -> None:
        if not isinstance(card, dict):
            self.bad(path, "must be a JSON object")
            return
        if card.get("type") != "AdaptiveCard":
            self.bad(f"{path}.type", f"must be \"AdaptiveCard\", not {card.get('type')!r}")
        if not nested:  # a ShowCard's card inherits the version of the card it is in
            if "version" not in card:
                self.bad(f"{path}.version", "is required (\"1.5\" or lower)")
            elif (v := _version(card["version"])) is None:
                self.bad(f"{path}.version", f"{card['version']!r} is not a version like \"1.5\"")
            elif v > SUPPORTED_VERSION:
                self.bad(f"{path}.version", f"{card['version']} is newer than 1.5, the highest Teams supports")
        self.elements(self._list(card, "body", path), f"{path}.body")
        self.actions(self._list(card, "actions", path), f"{path}.actions")


def check_card(card: Any) -> dict[str, Any]:
    """The card if it is a valid Adaptive Card for Teams (1.5 or lower); else CardError naming each problem."""
    declared = _version(card.get("version")) if isinstance(card, dict) else None
    checker = _Checker(min(declared or SUPPORTED_VERSION, SUPPORTED_VERSION))
    checker.card(card, "$")
    if not checker.problems:
        size = len(json.dumps(card, ensure_ascii=False).encode("utf-8"))
        if size > MAX_CARD_BYTES:
            checker.bad("$", f"the card is {size} bytes; Teams accepts about {MAX_CARD_BYTES}")
    if checker.problems:
        extra = len(checker.problems) - MAX_PROBLEMS
        raise CardError(checker.problems[:MAX_PROBLEMS] + ([f"and {extra} more"] if extra > 0 else []))
    assert isinstance(card, dict)
    return card
