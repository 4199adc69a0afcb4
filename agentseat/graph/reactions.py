"""Which Teams reaction types Graph takes: the six backward-compatible names, or a unicode emoji.

chatMessageReaction (reactionType): "Supported values include Unicode characters, custom, and
some backward-compatible reaction types, such as like, angry, sad, laugh, heart, and
surprised." setReaction: "supply the reactionType as unicode" (its example sends "💘").
`custom` needs a tenant's hosted custom emoji, which nothing here can create, so it is not
offered. Shared by the MCP tools (to refuse early with the list) and the sandbox (to refuse
as Graph would); it knows nothing of HTTP.
"""

from __future__ import annotations

import unicodedata

LEGACY_REACTIONS = ("like", "heart", "laugh", "surprised", "sad", "angry")
#: Joiners and selectors that hold multi-part emoji together (ZWJ sequences, text/emoji presentation, keycaps).
_GLUE = frozenset("\u200d\ufe0e\ufe0f\u20e3")
_MAX_CODE_POINTS = 16  # the longest family / flag ZWJ sequences stay well under this


def is_emoji(value: str) -> bool:
    """One emoji (or ZWJ sequence): symbols with their skin tones, joiners and tags, nothing else."""
    if not value or len(value) > _MAX_CODE_POINTS:
        return False
    symbol = False
    for ch in value:
        point = ord(ch)
        if unicodedata.category(ch) == "So":
            symbol = True
        elif not (ch in _GLUE or 0x1F3FB <= point <= 0x1F3FF or 0xE0020 <= point <= 0xE007F):
            return False  # letters, digits, punctuation, spaces, other marks
    return symbol


def reaction_type(value: str) -> str | None:
    """The reaction type to send for `value` (legacy names lowercased), or None if Graph would refuse it."""
    text = value.strip()
    if text.lower() in LEGACY_REACTIONS:
        return text.lower()
    return text if is_emoji(text) else None


def accepted() -> str:
    """The accepted values, for an error message."""
    return f"{', '.join(LEGACY_REACTIONS)}, or one unicode emoji such as 👍 or 🎉"
