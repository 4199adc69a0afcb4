"""A second OS process for the inbox tests (claims across processes, kill -9, cross-process wake-up).

Usage: python _inbox_child.py claim DB GROUP CLAIMANT ALL_CLAIMANTS | take DB TAKER ALL_TAKERS | append DB
       | append_one DB MESSAGE_ID
Reports go to stdout, one line each, flushed; logs go to stderr.
"""

from __future__ import annotations

import sys
import time

from agentseat.logging import configure
from agentseat.runtime.inbox import Event, Inbox


def _mail(message_id: str) -> Event:
    return Event.mail(message_id=message_id, sender_id="u-1", sender_upn="one@contoso.com", sender_name="One",
                      trust="colleague", text="hello", subject="s", created_at="2026-01-01T00:00:00+00:00",
                      source="poll")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _barrier(inbox: Inbox, me: str, everyone: list[str]) -> None:
    # Each claimant holds after its first batch until all have one, so that on a
    # loaded machine one process cannot drain the group before the other runs.
    inbox.set_meta(f"claimed:{me}", "1")
    deadline = time.monotonic() + 60
    while not all(inbox.get_meta(f"claimed:{name}") for name in everyone):
        if time.monotonic() > deadline:
            sys.exit("barrier timed out")
        time.sleep(0.001)


def main(argv: list[str]) -> None:
    configure(level="warning")
    mode, db = argv[0], argv[1]
    inbox = Inbox(db)
    if mode == "claim":
        group, claimant, everyone = argv[2], argv[3], argv[4].split(",")
        _say("ready")
        sys.stdin.readline()  # all claimants start together
        first = True
        # No pause between claims: the processes contend for every batch, so a
        # non-atomic claim would hand some event out twice.
        while batch := inbox.claim_next(group, claimant, limit=3):
            for event in batch:
                _say(str(event.seq))
            if first:
                _barrier(inbox, claimant, everyone)
                first = False
    elif mode == "take":
        me, everyone = argv[2], argv[3].split(",")
        _say("ready")
        sys.stdin.readline()
        first = True
        # As for claims: no pause between takes, so a non-atomic take would hand some event out twice.
        while batch := inbox.take_unread(limit=3):
            for event in batch:
                _say(str(event.seq))
            if first:
                _barrier(inbox, me, everyone)
                first = False
    elif mode == "append":
        i = 0
        while True:
            batch = [_mail(f"kill-{i + j}") for j in range(1 + i % 3)]
            i += len(batch)
            # Printed only after append() returned, i.e. after COMMIT.
            _say("\n".join(f"{e.key} {e.seq}" for e in inbox.append(batch)))
    elif mode == "append_one":
        inbox.append([_mail(argv[2])])
    inbox.close()


if __name__ == "__main__":
    main(sys.argv[1:])
