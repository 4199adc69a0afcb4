"""The daily summary and the session brief: the day triaged for the sponsor, and a short
snapshot of the agent's state for the model at the start of a session.

`triage` (triage.py) is the plain-code rules; `DailySummary` (daily.py) is the clock's timer
that raises the `summary` event (and mails it, if asked); `brief` (brief.py) is `session_brief`.
"""

from .triage import Day, triage

__all__ = ["Day", "triage"]
