"""`agentseat bot`: a headless reactive bot, an inbox sink that runs a handler per message and replies.

For each event it runs the handler command (split with shlex, started without a shell)
with the event as one JSON line on stdin, under a timeout, and sends the handler's stdout
back into the same Teams chat or as a reply to the same mail. Message text reaches the
handler only on stdin: never its command line, never its environment.

Who may run the handler: whoever the access policy allows (`AGENTSEAT_INBOUND_POLICY`:
sponsors, the allowlist, people a sponsor approved), plus whoever `--allow` names (or
everyone, `*`), and only for events confirmed through Graph. Senders the policy holds never
reach the bot; anyone else who reaches it (an `open` stranger under the `tenant` policy) gets
one short, polite refusal per chat (per sender for mail), remembered in the inbox so a
restart does not refuse again. In group chats the bot follows `AGENTSEAT_GROUP_POLICY` as the
channel push does: by default only messages that @mention the agent or come from a sponsor reach
the handler. Handlers of one chat run one at a time, in
order; different chats run concurrently, up to a bound.

The bot keeps its own cursor. Chats run concurrently, so events finish out of order: the
cursor moves to the highest seq below which everything is finished, and the events done
above it are kept in the inbox meta, so a restarted bot neither skips nor re-runs any.
It owns none of the runtime's work (intake, subscriptions); `runtime/app.py` runs it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

import anyio
import structlog
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from .errors import AgentSeatError, ConfigError
from .runtime.events import CHANGE_KINDS
from .channels import graph as channel_graph
from .channels.push import thread_of
from .runtime.group_policy import pushes
from .runtime.inbox import Event, Inbox
from .tools.base import MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from .access import AccessPolicy
    from .config import Settings
    from .runtime.app import Runtime

log = structlog.get_logger(__name__)

#: Replies are kept under Teams' ~28 KB message limit, with room for the request around them.
TEAMS_REPLY_BYTES = MAX_MESSAGE_BYTES - 1024
#: A mail reply has no such limit, but a handler's runaway output is no answer either.
MAIL_REPLY_BYTES = 256 * 1024
#: Output beyond this is read and dropped, so a chatty handler never blocks on a full pipe.
STDOUT_CAP = 1024 * 1024
STDERR_LOG_CHARS = 1000
#: Handlers running at once, across chats; and events read ahead of the slowest chat.
PARALLEL = 4
PENDING = 100
#: Sending a reply and recording progress are shielded from shutdown, for at most this long.
FINISH_BOUND = 20.0

REFUSAL = ("Hi{name}, thanks for your message. I can only take requests from the people I work for, "
           "so I won't act on this one. If it is important, please ask one of them to pass it on.")
FAILED = "Sorry, I could not handle your message: something went wrong on my side. It has been logged."
TIMED_OUT = "Sorry, handling your message took longer than {seconds:g} seconds, so I stopped. It has been logged."

Outcome = Literal["ok", "failed", "timeout", "error"]
_CONTROL = str.maketrans({c: None for c in [*range(0, 9), 11, 12, *range(14, 32), 127]})


@dataclass(frozen=True)
class BotOptions:
    """What `agentseat bot` was asked to do."""

    command: tuple[str, ...]
    allow: frozenset[str] = frozenset()  # lowercased UPNs or object ids; "*" is everyone
    timeout: float = 60.0
    parallel: int = PARALLEL
    sink: str = "bot"
    #: Run the handler for `teams_edit` / `teams_delete` events too. Off by default: the handler
    #: answers a message with a reply, and an edit is a correction of a message already answered
    #: (running it again answers twice, each edit once more), a deletion has no text to answer,
    #: and a refusal would be sent again for each change. The events stay unread in the inbox.
    handle_changes: bool = False

    @classmethod
    def parse(cls, exec_line: str, allow: Sequence[str] = (), timeout: float = 60.0) -> BotOptions:
        """From the CLI: `exec_line` is split like a shell would, but never given to one."""
        try:
            command = tuple(shlex.split(exec_line))
        except ValueError as exc:
            raise ConfigError(f"--exec cannot be parsed: {exc}", hint="check the quotes in the command") from exc
        if not command:
            raise ConfigError("--exec is empty", hint="give the handler command, for example --exec './handler.py'")
        if shutil.which(command[0]) is None:
            raise ConfigError(f"the handler {command[0]!r} is not an executable file or a command on PATH",
                              hint="give its path (and make it executable), or a command such as `python3 h.py`")
        if not timeout > 0:
            raise ConfigError("--timeout must be a positive number of seconds")
        names = frozenset(a.strip().lower() for item in allow for a in item.split(",") if a.strip())
        return cls(command=command, allow=names, timeout=timeout)


@dataclass(frozen=True)
class HandlerResult:
    outcome: Outcome
    output: str
    returncode: int | None
    stderr: str
    cut: bool = False  # stdout went past STDOUT_CAP


# --- running the handler ------------------------------------------------------------------------------
def handler_env(event: Event, base: Mapping[str, str]) -> dict[str, str]:
    """The handler's environment: `base` without agentseat's own settings (the key passphrase
    among them, and systemd's CREDENTIALS_DIRECTORY that holds it), plus a few facts about the
    event that carry none of its text."""
    env = {k: v for k, v in base.items() if not k.upper().startswith("AGENTSEAT_") and k != "CREDENTIALS_DIRECTORY"}
    env |= {"AGENTSEAT_EVENT_KIND": event.kind, "AGENTSEAT_EVENT_SEQ": str(event.seq),
            "AGENTSEAT_EVENT_TRUST": event.trust, "AGENTSEAT_EVENT_MESSAGE_ID": event.message_id,
            "AGENTSEAT_EVENT_CHAT_ID": event.chat_id or ""}
    return env


async def _feed(stream: ByteSendStream | None, payload: bytes) -> None:
    if stream is None:
        return
    try:
        await stream.send(payload)
        await stream.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # a handler may exit without reading its stdin


async def _drain(stream: ByteReceiveStream | None, into: bytearray, cap: int) -> bool:
    """Read to EOF, keeping the first `cap` bytes; True if more came."""
    cut = False
    if stream is None:
        return cut
    async for chunk in stream:
        room = cap - len(into)
        if len(chunk) > room:
            cut = True
        if room > 0:
            into += chunk[:room]
    return cut


def _kill_group(process: Process) -> None:
    # start_new_session made the handler a process-group leader: this reaches its children too.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    except AttributeError:  # no process groups on this platform
        process.kill()


async def run_handler(command: Sequence[str], event: Event, *, timeout: float,
                      env: Mapping[str, str] | None = None, cwd: str | None = None) -> HandlerResult:
    """Run `command` once for `event`; kill its whole process group on timeout or cancellation."""
    payload = (event.to_json() + "\n").encode("utf-8")
    try:
        process = await anyio.open_process(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, env=dict(env) if env is not None else None,
                                           cwd=cwd, start_new_session=True)
    except OSError as exc:
        return HandlerResult("error", "", None, f"cannot start the handler: {exc.strerror or exc}")
    out, err, cut = bytearray(), bytearray(), [False]
    finished = False
    try:
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_feed, process.stdin, payload)
                tg.start_soon(_drain, process.stderr, err, 64 * 1024)

                async def stdout() -> None:
                    cut[0] = await _drain(process.stdout, out, STDOUT_CAP)

                tg.start_soon(stdout)
            await process.wait()
            finished = True
    finally:
        killed = process.returncode is None
        if not finished:  # timed out or cancelled; a child of the handler may still hold its pipes
            _kill_group(process)
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()
    stderr = err.decode("utf-8", "replace")
    output = out.decode("utf-8", "replace")
    if killed:
        return HandlerResult("timeout", output, None, stderr, cut[0])
    code = process.returncode
    return HandlerResult("ok" if code == 0 else "failed", output, code, stderr, cut[0])


def fit(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, on a character boundary, saying that it was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    note = f"\n\n[… output cut: {{}} of {len(data)} bytes shown]"
    keep = limit - len(note.format(len(data)).encode("utf-8"))
    head = data[:max(keep, 0)].decode("utf-8", "ignore").rstrip()
    return head + note.format(len(head.encode("utf-8")))


def reply_text(result: HandlerResult, timeout: float) -> str | None:
    """What the sender sees for `result`; None when there is nothing to say."""
    if result.outcome == "ok":
        return result.output.translate(_CONTROL).strip() or None
    if result.outcome == "timeout":
        return TIMED_OUT.format(seconds=timeout)
    return FAILED


# --- progress: the cursor and what is done beyond it --------------------------------------------------------
class _Progress:
    """Seqs started and finished; persists the cursor (everything at or below it is done)
    and the finished seqs above it, in one meta key, before moving the cursor."""

    def __init__(self, inbox: Inbox, sink: str) -> None:
        self._inbox, self._sink, self._key = inbox, sink, f"{sink}:done"
        self.cursor = 0
        self.done: set[int] = set()
        self._running: set[int] = set()
        self._seen = 0
        self._recorded = False  # the meta key holds seqs
        self._lock = anyio.Lock()

    async def load(self) -> int:
        inbox = self._inbox
        cursor = await anyio.to_thread.run_sync(inbox.cursor, self._sink)
        # A bot's first start answers what arrives from now on, not the history. A marker, not
        # cursor 0, says "first": a bot that never handled anything still resumes where it stopped.
        if await anyio.to_thread.run_sync(inbox.get_meta, f"{self._sink}:started") is None:
            cursor = await inbox.aadvance(self._sink, await anyio.to_thread.run_sync(inbox.latest_seq))
            await anyio.to_thread.run_sync(inbox.set_meta, f"{self._sink}:started", str(cursor))
        raw = await anyio.to_thread.run_sync(inbox.get_meta, self._key)
        self.done = {s for s in json.loads(raw or "[]") if s > cursor}
        self._recorded = raw is not None
        self.cursor = self._seen = cursor
        return cursor

    def start(self, seq: int) -> None:
        self._running.add(seq)
        self._seen = max(self._seen, seq)

    async def finish(self, seq: int) -> None:
        async with self._lock:
            self._running.discard(seq)
            self.done.add(seq)
            mark = min(self._running) - 1 if self._running else self._seen
            beyond = {s for s in self.done if s > mark}
            # Written before the cursor moves, and holding every seq done past the old cursor:
            # a crash between the two writes then re-runs nothing.
            if beyond:
                await anyio.to_thread.run_sync(self._inbox.set_meta, self._key, json.dumps(sorted(self.done)))
            if mark > self.cursor:
                self.cursor = await self._inbox.aadvance(self._sink, mark)
            if not beyond and self._recorded:
                await anyio.to_thread.run_sync(self._inbox.set_meta, self._key, None)
            self._recorded = bool(beyond)
            self.done = beyond


# --- the sink --------------------------------------------------------------------------------------------
class Bot:
    """The bot as a runtime sink: `await runtime.run([Bot(options)])`."""

    def __init__(self, options: BotOptions, *, handler_base_env: Mapping[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self.options = options
        # Handlers often need the user's environment (PATH, HOME, their own API keys); it is
        # copied here, where the child is built, and agentseat's settings are removed from it.
        self.handler_base_env = dict(os.environ) if handler_base_env is None else dict(handler_base_env)
        self.cwd = cwd
        self.handled = 0
        self.refused = 0
        self.ready = anyio.Event()
        self._access: AccessPolicy | None = None
        self._queues: dict[str, deque[Event]] = {}

    async def __call__(self, runtime: Runtime) -> None:
        inbox = runtime.inbox
        progress = _Progress(inbox, self.options.sink)
        cursor = await progress.load()
        self._access = runtime.access
        self._access.extend(self.options.allow)
        await self._access.resolve_names()
        slots = anyio.Semaphore(PENDING)
        limiter = anyio.CapacityLimiter(self.options.parallel)
        log.info("bot_ready", cursor=cursor, handler=os.path.basename(self.options.command[0]),
                 allow="*" if "*" in self.options.allow else len(self.options.allow), timeout=self.options.timeout)
        self.ready.set()
        async with anyio.create_task_group() as tg:
            while True:
                events = await inbox.aread(cursor, PENDING)
                if not events:
                    await inbox.wait_for_new(cursor, timeout=30.0)
                    continue
                for event in events:
                    cursor = event.seq
                    progress.start(event.seq)
                    if event.seq in progress.done:  # finished before a restart, beyond the cursor
                        await progress.finish(event.seq)
                        continue
                    await slots.acquire()
                    key = f"teams:{event.chat_id}" if event.chat_id else f"mail:{event.sender_upn.lower()}"
                    if key in self._queues:
                        self._queues[key].append(event)
                    else:
                        self._queues[key] = deque([event])
                        tg.start_soon(self._worker, runtime, key, progress, slots, limiter)

    async def _worker(self, runtime: Runtime, key: str, progress: _Progress, slots: anyio.Semaphore,
                      limiter: anyio.CapacityLimiter) -> None:
        """One chat's events, one at a time, in order; ends when the chat's queue is empty."""
        queue = self._queues[key]
        try:
            while queue:
                event = queue.popleft()
                try:
                    await self._handle(runtime, event, progress, limiter)
                except Exception:  # a bug with one event must not stop the bot for every other
                    log.exception("bot_event_crashed", seq=event.seq, kind=event.kind)
                    with anyio.CancelScope(shield=True):
                        await progress.finish(event.seq)
                finally:
                    slots.release()
        finally:
            del self._queues[key]

    def allows_sender(self, event: Event) -> bool:
        """Whether the access policy allows this sender (sponsors, the allowlist, approved people
        and `--allow`), once Graph has confirmed the message."""
        assert self._access is not None
        return self._access.allows(event)

    def allows(self, event: Event) -> bool:
        # A notification's word is not enough to run a handler: sender and text must be Graph's.
        return event.confirmed and self.allows_sender(event)

    async def _handle(self, runtime: Runtime, event: Event, progress: _Progress,
                      limiter: anyio.CapacityLimiter) -> None:
        if event.kind in CHANGE_KINDS and not self.options.handle_changes:
            log.info("bot_change_skipped", seq=event.seq, kind=event.kind, chat=event.chat_id)
            await progress.finish(event.seq)
            return
        if not pushes(event, runtime.settings.group_policy):
            # AGENTSEAT_GROUP_POLICY, as for the channel: a group line not addressed to the agent is
            # neither answered nor refused (it stays in the inbox).
            log.info("bot_not_addressed", seq=event.seq, chat=event.chat_id)
            await progress.finish(event.seq)
            return
        await anyio.to_thread.run_sync(runtime.access.refresh_if_changed)  # approvals from `agentseat access`
        allowed = self.allows(event)
        if not allowed and self.allows_sender(event):
            # Stored unconfirmed before this sender was allowed (`--allow` in a sink process): neither
            # run nor refuse.
            log.warning("bot_unconfirmed_skipped", seq=event.seq, kind=event.kind, chat=event.chat_id)
            await progress.finish(event.seq)
            return
        text: str | None = None
        if allowed:
            log.info("bot_handler_started", seq=event.seq, kind=event.kind, chat=event.chat_id, trust=event.trust)
            async with limiter:
                result = await run_handler(self.options.command, event, timeout=self.options.timeout,
                                           env=handler_env(event, self.handler_base_env), cwd=self.cwd)
            self._log_result(event, result)
            text = reply_text(result, self.options.timeout)
            self.handled += 1
        # Once the handler has run, its reply and the progress record finish even during shutdown.
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(FINISH_BOUND):
                try:
                    if not allowed:
                        await self._refuse_once(runtime, event)
                    elif text is not None:
                        await self._reply(runtime, event, text)
                        # Answered: the event is read (an MCP session sharing this inbox skips it).
                        await runtime.inbox.amark_read(seqs=[event.seq])
                except AgentSeatError as exc:
                    log.error("bot_reply_failed", seq=event.seq, kind=event.kind, error=exc.message, hint=exc.hint)
            await progress.finish(event.seq)

    def _log_result(self, event: Event, result: HandlerResult) -> None:
        # A handler may echo the message it was given, so its stderr is shown only at
        # debug level; the usual log carries its size, never its text.
        stderr = result.stderr.strip()[-STDERR_LOG_CHARS:]
        facts = {"seq": event.seq, "kind": event.kind, "chat": event.chat_id, "stderr_chars": len(result.stderr)}
        if stderr:
            log.debug("bot_handler_stderr", seq=event.seq, stderr=stderr)
        if result.outcome == "ok":
            if reply_text(result, self.options.timeout) is None:
                log.info("bot_handler_no_output", **facts)
            else:
                log.info("bot_handler_done", **facts, output_bytes=len(result.output.encode()), cut=result.cut)
        elif result.outcome == "timeout":
            log.warning("bot_handler_timed_out", **facts, timeout=self.options.timeout)
        else:
            log.warning("bot_handler_failed", **facts, returncode=result.returncode)

    async def _reply(self, runtime: Runtime, event: Event, text: str) -> None:
        if event.kind == "channel":  # in the thread the post started, or the reply belongs to
            body = {"body": {"contentType": "text", "content": fit(text, TEAMS_REPLY_BYTES)}}
            await channel_graph.post(runtime.graph, event.team_id, event.chat_id or "", body, thread_of(event))
        elif event.kind == "teams":
            assert event.chat_id is not None
            body = {"body": {"contentType": "text", "content": fit(text, TEAMS_REPLY_BYTES)}}
            await runtime.graph.post(f"/chats/{quote(event.chat_id, safe=':@.')}/messages", body)
        else:
            # message-reply: the reply goes to the sender, in the same conversation.
            await runtime.graph.post(f"/me/messages/{quote(event.message_id, safe='')}/reply",
                                     {"comment": fit(text, MAIL_REPLY_BYTES)})
        log.info("bot_replied", seq=event.seq, kind=event.kind, chat=event.chat_id)

    async def _refuse_once(self, runtime: Runtime, event: Event) -> None:
        who = event.chat_id if event.kind == "teams" else (event.sender_upn or event.sender_id).lower()
        key = f"{self.options.sink}:refused:{event.kind}:{who}"
        facts = {"seq": event.seq, "kind": event.kind, "chat": event.chat_id, "sender": event.sender_id or None,
                 "trust": event.trust}
        if await anyio.to_thread.run_sync(runtime.inbox.get_meta, key) is not None:
            log.info("bot_not_allowed", **facts, refusal="already_sent")
            return
        first = event.sender_name.split()[0] if event.sender_name.strip() else ""
        await self._reply(runtime, event, REFUSAL.format(name=f" {first}" if first else ""))
        await anyio.to_thread.run_sync(runtime.inbox.set_meta, key, event.created_at)
        self.refused += 1
        log.info("bot_not_allowed", **facts, refusal="sent")


# --- the command ----------------------------------------------------------------------------------------
async def _until_signalled(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("bot_stopping", signal=signal.Signals(signum).name)
            scope.cancel()
            return


async def serve_bot(settings: Settings, options: BotOptions) -> None:
    """Run the runtime with the bot as its sink until SIGINT or SIGTERM."""
    from .runtime.app import Runtime

    runtime = Runtime(settings)
    runtime.access.extend(options.allow)  # before any event is decided
    async with anyio.create_task_group() as tg:
        tg.start_soon(_until_signalled, tg.cancel_scope)
        await runtime.run([Bot(options)])


def _agentseat_error(group: BaseExceptionGroup) -> AgentSeatError | None:
    matched, _ = group.split(AgentSeatError)
    error: BaseException | None = matched
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error if isinstance(error, AgentSeatError) else None


def run_bot(settings: Settings, options: BotOptions) -> int:
    """`agentseat bot`: blocks until stopped; 0 on a clean stop."""
    try:
        anyio.run(serve_bot, settings, options)
    except BaseExceptionGroup as group:  # task groups wrap errors; the CLI reports ours in one line
        error = _agentseat_error(group)
        if error is None:
            raise
        raise error from group
    return 0
