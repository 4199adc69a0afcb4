#!/usr/bin/env bash
# Checks that Claude Code itself connects to `agentseat serve` (on the sandbox tenant).
# Needs npm. Installs Node.js 22 and Claude Code from the npm registry into a temp dir,
# starts `agentseat sandbox`, provisions the agent with `agentseat setup`, registers the
# server with `claude mcp add`, and prints `claude mcp list` (expect "✔ Connected").
# scripts/claude-code-channel-check.sh goes further: the plugin, and a push seen in a session.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
agentseat=${AGENTSEAT:-$here/.venv/bin/agentseat}
. "$here/scripts/claude-code-lib.sh"
work=$(mktemp -d)
SANDBOX_PID=
trap '[ -n "$SANDBOX_PID" ] && kill "$SANDBOX_PID" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
claude_code_install "$work"
export PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring AGENTSEAT_KEY_PASSPHRASE=claude-code-check
sandbox_start "$agentseat" "$work/state" "$work/sandbox.log"
"$CLAUDE" --version
"$CLAUDE" mcp add agentseat \
  -e PYTHON_KEYRING_BACKEND=$PYTHON_KEYRING_BACKEND -e AGENTSEAT_KEY_PASSPHRASE=$AGENTSEAT_KEY_PASSPHRASE -e AGENTSEAT_MODE=webhook -e AGENTSEAT_TUNNEL=loopback \
  -- "$agentseat" --state-dir "$work/state" --env-file "$ENV_FILE" serve
"$CLAUDE" mcp list
