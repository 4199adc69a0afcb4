#!/usr/bin/env bash
# Checks agentseat as a Claude Code plugin, end to end, against the sandbox tenant:
#   1. `claude plugin validate`, `claude plugin marketplace add <clone>` and
#      `claude plugin install agentseat@agentseat` from a git clone of this repository
#      (its committed HEAD);
#   2. an interactive `claude --dangerously-load-development-channels plugin:agentseat@agentseat`
#      in tmux (Enter on the development-channels warning), its debug log's channel
#      registration for the plugin's server;
#   3. a sponsor's Teams DM posted through the sandbox control API, and the
#      `← agentseat · <user>: ...` line it puts on the screen;
#   4. a DM with a pasted screenshot (the push carries `attachment_count` and `attachments` in
#      meta) and a team-channel post that @mentions the agent (a `channel` push with team_id,
#      channel_id and thread_id in meta): each must reach the screen, and the debug log must
#      show no meta key dropped and no instructions truncated.
# Prints what it saw and exits 0 only if every push appeared.
#
# Needs npm, git, tmux and curl. Claude Code comes from npm into a temp dir with a throwaway
# HOME. Offline stand-ins, no credential involved: a dummy ANTHROPIC_API_KEY (the model call
# itself fails, which this check does not need), and Anthropic's channels rollout flag
# (`tengu_harbor`) written into ~/.claude.json `cachedGrowthBookFeatures`, where a networked
# install caches it. Keep DISABLE_TELEMETRY, DO_NOT_TRACK, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC
# and DISABLE_GROWTHBOOK unset: each one turns channels off.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
agentseat=${AGENTSEAT:-$here/.venv/bin/agentseat}
. "$here/scripts/claude-code-lib.sh"
work=$(mktemp -d)
sock="agentseat-check-$$"
SANDBOX_PID=
cleanup() {
  set +e
  tmux -L "$sock" kill-server 2>/dev/null
  [ -z "$SANDBOX_PID" ] || kill "$SANDBOX_PID" 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; return; fi
  # Claude Code and its server may still be writing under $work for a moment after the hangup.
  for _ in $(seq 20); do rm -rf "$work" 2>/dev/null && return; sleep 0.5; done
  echo "could not remove $work" >&2
}
trap cleanup EXIT
unset DISABLE_TELEMETRY DO_NOT_TRACK CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC DISABLE_GROWTHBOOK \
  CLAUDE_CODE_USE_BEDROCK CLAUDE_CODE_USE_VERTEX CLAUDE_CODE_USE_FOUNDRY
cd "$work"
claude_code_install "$work"
echo "== $("$CLAUDE" --version)"

echo "== plugin from a clone of $here"
git clone --quiet "$here" "$work/clone"
"$CLAUDE" plugin validate "$work/clone"
"$CLAUDE" plugin marketplace add "$work/clone"
"$CLAUDE" plugin install agentseat@agentseat
"$CLAUDE" plugin list
"$CLAUDE" plugin details agentseat@agentseat | grep -E 'Skills|MCP servers'

echo "== sandbox tenant"
export PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring AGENTSEAT_KEY_PASSPHRASE=claude-code-check
export AGENTSEAT_STATE_DIR="$work/state" AGENTSEAT_MODE=webhook AGENTSEAT_TUNNEL=loopback
sandbox_start "$agentseat" "$work/state" "$work/sandbox.log"
sb_post() {  # sb_post PATH JSON: a sandbox control-API POST
  curl -sS --fail --cacert "$(sed -n 's/^AGENTSEAT_CA_BUNDLE=//p' "$ENV_FILE")" -X POST \
    "$(sed -n 's/^AGENTSEAT_SANDBOX_URL=//p' "$ENV_FILE")$1" -H 'content-type: application/json' -d "$2"
}
# A team made before the session starts, so the runtime subscribes to its channel at start.
team_json=$(sb_post /_sandbox/teams "{\"name\": \"Check team\", \"members\": [\"$(sed -n 's/^AGENTSEAT_SPONSORS=//p' "$ENV_FILE" | cut -d, -f1)\", \"$(sed -n 's/^AGENTSEAT_AGENT_USER_UPN=//p' "$ENV_FILE")\"]}")
# The plugin's launcher starts the `agentseat` it finds on PATH.
mkdir -p "$work/bin" "$work/project"
ln -s "$(readlink -f "$agentseat")" "$work/bin/agentseat"
export PATH="$work/bin:$PATH" ANTHROPIC_API_KEY="sk-ant-api03-$(printf 'x%.0s' $(seq 95))"
python3 - "$HOME/.claude.json" "$work/project" "$ANTHROPIC_API_KEY" <<'PY'
import json, sys
path, project, key = sys.argv[1:]
try:
    config = json.load(open(path))
except FileNotFoundError:
    config = {}
config.update(
    hasCompletedOnboarding=True, theme="dark",
    customApiKeyResponses={"approved": [key[-20:]], "rejected": []},
    projects={project: {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}},
    # What a networked install caches from Anthropic's rollout service.
    cachedGrowthBookFeatures={"tengu_harbor": True, "tengu_harbor_permissions": True},
)
json.dump(config, open(path, "w"), indent=2)
PY

echo "== claude --dangerously-load-development-channels plugin:agentseat@agentseat (in tmux)"
debug="$work/claude-debug.log"
screen() { tmux -L "$sock" capture-pane -p -t cc | grep -v '^[[:space:]]*$' || true; }
wait_for() {  # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || return 1; sleep 1; done
}
tmux -L "$sock" new-session -d -s cc -x 200 -y 50 -c "$work/project" \
  "$CLAUDE" --debug-file "$debug" --dangerously-load-development-channels plugin:agentseat@agentseat
# Offline, Claude Code retries Anthropic's settings endpoints for ~30 s before its first screen.
if wait_for 120 sh -c "tmux -L $sock capture-pane -p -t cc | grep -q 'Loading development channels'"; then
  screen | grep -E 'WARNING|Channels:|local development' | sed 's/^/  screen: /'
  tmux -L "$sock" send-keys -t cc Enter
else
  echo "no development-channels warning; the screen:"; screen; exit 1
fi
registered=0
wait_for 90 grep -q 'plugin:agentseat:agentseat": Channel notifications' "$debug" && registered=1
grep -E 'plugin:agentseat:agentseat": (Successfully connected|Channel notifications|Server instructions)' "$debug" \
  | sed -E 's/^([0-9]{4}-[^ ]+ )?/  debug: /' || true
[ $registered = 1 ] || { echo "no channel registration in the debug log"; screen; exit 1; }

echo "== a sponsor's Teams DM through the sandbox control API"
sponsor=$(sed -n 's/^AGENTSEAT_SPONSORS=//p' "$ENV_FILE" | cut -d, -f1)
agent=$(sed -n 's/^AGENTSEAT_AGENT_USER_UPN=//p' "$ENV_FILE")
url=$(sed -n 's/^AGENTSEAT_SANDBOX_URL=//p' "$ENV_FILE")
ca=$(sed -n 's/^AGENTSEAT_CA_BUNDLE=//p' "$ENV_FILE")
text="channel check $(date +%s): hello from Teams"
curl -sS --fail --cacert "$ca" -X POST "$url/_sandbox/messages" -H 'content-type: application/json' \
  -d "{\"from\": \"$sponsor\", \"to\": \"$agent\", \"text\": \"$text\"}" | sed 's/^/  sandbox: /'
echo
if wait_for 30 sh -c "tmux -L $sock capture-pane -p -t cc | grep -q '← agentseat'"; then
  screen | grep '← agentseat' | sed 's/^/  screen: /'
  grep -A1 'notifications/claude/channel:' "$debug" | sed -E 's/^([0-9]{4}-[^ ]+ )?/  debug: /' || true
  echo "ok: the DM reached the session as a channel push"
else
  echo "FAIL: no push on the screen after 30 s; the screen:"; screen
  grep -iE 'channel|agentseat' "$debug" | tail -20
  exit 1
fi
pushes() { tmux -L "$sock" capture-pane -p -S -200 -t cc | grep -c '← agentseat' || true; }
expect_push() {  # expect_push N WHAT: wait until N pushes are on the screen
  if wait_for 30 sh -c "[ \$(tmux -L $sock capture-pane -p -S -200 -t cc | grep -c '← agentseat') -ge $1 ]"; then
    screen | grep '← agentseat' | tail -1 | sed 's/^/  screen: /'
    echo "ok: $2 reached the session"
  else
    echo "FAIL: $2 did not reach the screen after 30 s; the screen:"; screen
    grep -iE 'channel|agentseat' "$debug" | tail -20
    exit 1
  fi
}

echo "== a sponsor's DM with a pasted screenshot"
png=iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==
sb_post /_sandbox/messages "{\"from\": \"$sponsor\", \"to\": \"$agent\", \"text\": \"screenshot check\", \"images\": [\"$png\"]}" \
  | sed 's/^/  sandbox: /'; echo
expect_push 2 "the DM with an image"

echo "== a channel post that @mentions the agent"
team=$(printf '%s' "$team_json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["team_id"])')
channel=$(printf '%s' "$team_json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["channel_id"])')
sb_post /_sandbox/channel-messages "{\"from\": \"$sponsor\", \"team_id\": \"$team\", \"channel_id\": \"$channel\", \"text\": \"@$agent channel check\", \"mentions\": [\"$agent\"]}" \
  | sed 's/^/  sandbox: /'; echo
expect_push 3 "the channel mention"

echo "== the host's complaints, if any"
if grep -iE 'meta key|invalid.*meta|truncated from' "$debug"; then
  echo "FAIL: the host dropped a meta key or cut the instructions (lines above)"; exit 1
fi
echo "PASS: the DM, the screenshot and the channel mention reached the session; no meta key dropped"

