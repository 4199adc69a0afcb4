"""`agentseat status`: what the state directory says, without a running runtime.

It reads the durable inbox (event counts, unread events, the last event, the subscriptions the
manager keeps in the inbox's `subscriptions` meta key), the owner lock (is a runtime running, and which pid)
and the key store (the active certificate and its expiry). It calls no service and changes
nothing; it never prints a message's text, only its kind, sender and times.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..config import Settings
from ..eventhub.status import META_KEY as EVENTHUB_META
from ..eventhub.status import eventhub_lines
from ..errors import AgentSeatError
from ..identity.keys import KeyStore
from ..tenant_facts import TenantFacts
from .delivery_watch import META_KEY as DELIVERY_META, WINDOW_SECONDS, missed_in_window
from .inbox import Inbox
from .inbox_view import unread_line, unread_status
from .lock import OwnerLock
from .transport_choice import META_KEY as TRANSPORT_META, transport_line
from ..clock.scheduler import scheduled
from ..promises import Promises



@dataclass
class RuntimeStatus:
    """What the running runtime is doing, for `status` and `describe()`."""

    role: str = "starting"  # starting | owner | sink
    mode: str = ""
    source: str = ""  # webhook | poll | webhook+poll | eventhub | eventhub+poll
    public_url: str = ""
    polling: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)  # signal 0 checks existence and sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _when(epoch: float) -> str:
    if not epoch:
        return "-"
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    left = moment - dt.datetime.now(dt.timezone.utc)
    hours = left.total_seconds() / 3600
    return f"{moment:%Y-%m-%d %H:%M} UTC ({'in ' if hours >= 0 else ''}{abs(hours):.1f} h{' ago' if hours < 0 else ''})"


def collect(settings: Settings) -> dict[str, Any]:
    """The status as data (also what `--json` style callers would want)."""
    state = settings.state_dir
    info: dict[str, Any] = {"state_dir": str(state), "agent": settings.agent_user_upn or settings.agent_user_id or None}
    pid = OwnerLock(state / "runtime.lock").owner_pid() if (state / "runtime.lock").exists() else None
    info["runtime"] = {"running": _alive(pid), "pid": pid if _alive(pid) else None}
    try:
        certs = KeyStore(settings).list()
        info["certificates"] = [{"thumbprint": c.sha1, "active": c.active, "expires": c.not_after.isoformat()}
                                for c in certs]
    except AgentSeatError as exc:
        info["certificates"] = {"error": exc.message}
    info["tenant"] = TenantFacts.read(state)
    path = state / "inbox.db"
    if not path.exists():
        info["inbox"] = None
        return info
    inbox = Inbox(path)
    try:
        last = inbox.last_event()
        info["inbox"] = {
            "events": inbox.count(), "teams": inbox.count("teams"), "mail": inbox.count("mail"),
            "unread": unread_status(inbox.unread_summary()),
            "last_event": None if last is None else {
                "seq": last.seq, "kind": last.kind, "from": last.sender_upn or last.sender_name,
                "trust": last.trust, "source": last.source, "received_at": last.received_at},
        }
        raw = inbox.get_meta("subscriptions")
        info["subscriptions"] = json.loads(raw) if raw else {}
        raw = inbox.get_meta(TRANSPORT_META)  # what `auto` chose and why (transport_choice.py)
        info["transport"] = json.loads(raw) if raw else None
        hub = inbox.get_meta(EVENTHUB_META)  # written by the Event Hubs consumer (eventhub/consumer.py)
        info["eventhub"] = json.loads(hub) if hub else None
        raw = inbox.get_meta("subscriptions.channels")  # one per joined team channel (subscriptions/channels.py)
        info["channel_subscriptions"] = json.loads(raw) if raw else {}
        watch = inbox.get_meta(DELIVERY_META)
        info["missed_notifications"] = None if watch is None else missed_in_window(watch)
    finally:
        inbox.close()
    if (state / "promises.db").exists():  # what the clock raises next (issue 15)
        promises = Promises(state / "promises.db")
        try:
            info["scheduled"] = scheduled(promises)
        finally:
            promises.close()
    return info


def _print_tenant(tenant: dict[str, Any], out: TextIO) -> None:
    """What the runtime saw the tenant do, and any warning it raised (e.g. notifications not arriving)."""
    for key, fact in sorted(tenant.get("facts", {}).items()):
        value = fact.get("value")
        shown = value if isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True)
        print(f"tenant:         {key} = {shown} (seen {fact.get('seen_at', '?')})", file=out)
    for key, warning in sorted(tenant.get("warnings", {}).items()):
        print(f"warning:        {warning.get('message')} [{key}, since {warning.get('since', '?')}]", file=out)


def status(settings: Settings, out: TextIO | None = None) -> int:
    """Print the status; 0 always (a missing inbox is a state, not an error)."""
    out = out or sys.stdout
    info = collect(settings)
    run = info["runtime"]
    print(f"agent:          {info['agent'] or 'not set up (run `agentseat setup`)'}", file=out)
    print(f"state dir:      {info['state_dir']}", file=out)
    print(f"runtime:        {'running, pid ' + str(run['pid']) if run['running'] else 'not running'}", file=out)
    certs = info["certificates"]
    if isinstance(certs, dict):
        print(f"certificates:   unreadable: {certs['error']}", file=out)
    for cert in certs if isinstance(certs, list) else []:
        mark = "active" if cert["active"] else "old"
        print(f"certificate:    {cert['thumbprint']} ({mark}, expires {cert['expires'][:10]})", file=out)
    _print_tenant(info["tenant"], out)
    inbox = info.get("inbox")
    if inbox is None:
        print("inbox:          empty (no runtime has run in this state dir yet)", file=out)
        return 0
    if line := transport_line(info.get("transport")):
        print(f"transport:      {line}{'' if run['running'] else ' (last run)'}", file=out)
    print(f"inbox:          {inbox['events']} events ({inbox['teams']} teams, {inbox['mail']} mail)", file=out)
    listing = "; list them with `agentseat inbox`" if inbox["unread"]["unread"] else ""
    print(f"unread:         {unread_line(inbox['unread'])}{listing}", file=out)
    last = inbox["last_event"]
    if last:
        what = f"#{last['seq']} {last['kind']} from {last['from']} ({last['trust']}, via {last['source']})"
        print(f"last event:     {what} at {last['received_at']}", file=out)
    subs = info.get("subscriptions") or {}
    if not subs:
        print("subscriptions:  none recorded", file=out)
    for kind, sub in sorted(subs.items()):
        detail = f"{sub.get('state', '?')}, expires {_when(float(sub.get('expires') or 0))}"
        if sub.get("error"):
            detail += f", error: {sub['error']}"
        if sub.get("state") == "refused" and sub.get("retry_at"):
            detail += f", retry at {_when(float(sub['retry_at']))}"
        print(f"subscription:   {kind}: {detail}", file=out)
    for line in eventhub_lines(info.get("eventhub"), running=run["running"]):
        print(f"event hub:      {line}", file=out)
    if channel_subs := info.get("channel_subscriptions"):
        active = sum(1 for sub in channel_subs.values() if sub.get("state") == "active")
        channels = f"channels:       {active} of {len(channel_subs)} channel subscriptions active"
        print(f"{channels} (in auto mode the rest are polled)", file=out)
    plan = info.get("scheduled") or {}
    print(f"scheduled:      next due {plan.get('next_due') or 'nothing'}", file=out)
    for item in plan.get("promises", []):
        print(f"promise:        {item['id']} due {item['due']} in {item['chat_id']}", file=out)
    if info.get("missed_notifications") is not None:  # webhook mode has run here (delivery_watch.py)
        missed = (f"notifications:  missed_notifications = {info['missed_notifications']} (found by reconcile, "
                  f"never notified, last {WINDOW_SECONDS / 3600:g} h)")
        print(missed, file=out)
    return 0
