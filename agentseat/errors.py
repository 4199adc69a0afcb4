"""The one error hierarchy of agentseat.

Every error says what happened and what to do about it. The CLI maps them to an
exit code and one line; MCP tools map them to tool errors.
"""

from __future__ import annotations


class AgentSeatError(Exception):
    """Base class. `hint` tells the user what to do next."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(AgentSeatError):
    """A setting is missing or invalid."""

    exit_code = 78  # EX_CONFIG


class KeyStoreError(AgentSeatError):
    """The agent's private key cannot be stored or read safely."""

    exit_code = 77  # EX_NOPERM


class TokenError(AgentSeatError):
    """A hop of the token chain failed.

    `hop` names the hop (`hop1:blueprint`, `hop2:agent_identity`,
    `hop3:agent_user`) and `code` is Entra's error code (`AADSTS...`).
    """

    exit_code = 69  # EX_UNAVAILABLE

    def __init__(self, message: str, *, hop: str, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.hop = hop
        self.code = code


class GraphError(AgentSeatError):
    """Microsoft Graph answered with an error."""

    exit_code = 69

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        hint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class NotFoundError(GraphError):
    """The Graph resource does not exist (404)."""


class ThrottledError(GraphError):
    """Graph kept throttling us past the retry deadline."""


class TunnelError(AgentSeatError):
    """The tunnel could not start or was lost."""

    exit_code = 69


class InboxError(AgentSeatError):
    """The durable inbox cannot be written (for example, a full disk)."""

    exit_code = 74  # EX_IOERR


class ProvisionError(AgentSeatError):
    """`agentseat setup` or `teardown` could not complete a step."""


class ToolInputError(AgentSeatError):
    """An MCP tool was called with arguments it cannot act on."""


class DocumentError(AgentSeatError):
    """A document cannot be read or written: too large, encrypted, malformed or of an unsupported type.

    `reason` is a short machine-readable word (`too_large`, `encrypted`, `unsafe`, `malformed`,
    `unsupported`, `mismatch`) so a tool can say why without parsing the message.
    """

    exit_code = 65  # EX_DATAERR

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
