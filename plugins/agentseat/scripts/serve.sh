#!/bin/sh
# Starts `agentseat serve` for Claude Code (stdin/stdout are the MCP stream).
# Which agentseat: AGENTSEAT_BIN if set, else the `agentseat` on PATH (pipx, uv tool,
# a venv), else `uvx agentseat` (runs the package published on PyPI).
# Anything printed here goes to stderr, which Claude Code keeps under
# ~/.cache/claude-cli-nodejs/<cwd-slug>/mcp-logs-plugin-agentseat-agentseat/.
if [ -n "${AGENTSEAT_BIN:-}" ]; then
  exec "$AGENTSEAT_BIN" serve
fi
if command -v agentseat >/dev/null 2>&1; then
  exec agentseat serve
fi
if command -v uvx >/dev/null 2>&1; then
  exec uvx agentseat serve
fi
echo "agentseat: not installed. Install it with 'pipx install agentseat' (or 'uv tool install agentseat'," \
     "or set AGENTSEAT_BIN to its path), run 'agentseat setup', then restart Claude Code." >&2
exit 127
