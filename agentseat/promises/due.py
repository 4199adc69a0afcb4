"""`due` as people write it, read in the sponsor's time zone (AGENTSEAT_TIMEZONE).

Accepted: an ISO 8601 time (without an offset it is local time), `in N unit [N unit ...]`
(seconds, minutes, hours, days, weeks; short forms s/sec/min/h/hr/d/w), `today|tonight|tomorrow
[at] H[:MM] [am|pm]` (tomorrow alone is 9:00), a weekday `[next] monday [at] H:MM`, and a
bare `H:MM` (the next time the clock shows it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..errors import ToolInputError

__all__ = ["parse_due"]

_UNITS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60,
          "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400,
          "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}
_IN = re.compile(r"^in\s+((?:\d+(?:\.\d+)?\s*[a-z]+\s*(?:,|and)?\s*)+)$")
_PAIR = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_CLOCK = r"(?:at\s+)?(\d{1,2})(?::(\d{2}))?\s*(am|pm)?"
_DAY = re.compile(rf"^(today|tonight|tomorrow)(?:\s+{_CLOCK})?$")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY = re.compile(rf"^(?:next\s+|on\s+)?({'|'.join(_WEEKDAYS)})(?:\s+{_CLOCK})?$")
_BARE = re.compile(rf"^{_CLOCK}$")
HINT = "use an ISO time (2026-05-01T09:00), `in 2 hours`, `tomorrow 9:00` or `friday 14:30`"


def _clock(hour: str | None, minute: str | None, half: str | None, default: time) -> time:
    if hour is None:
        return default
    h, m = int(hour), int(minute or 0)
    if half == "pm" and h < 12:
        h += 12
    elif half == "am" and h == 12:
        h = 0
    if h > 23 or m > 59:
        raise ToolInputError(f"due: {h}:{m:02d} is not a time of day", hint=HINT)
    return time(h, m)


def _local(day: datetime, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day.date(), at, tzinfo=zone)


def parse_due(text: str, zone: str | ZoneInfo = "UTC", now: datetime | None = None) -> datetime:
    """When `text` means, as an aware UTC datetime; a ToolInputError saying what is accepted otherwise."""
    tz = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
    local_now = (now or datetime.now(UTC)).astimezone(tz)
    phrase = " ".join(text.strip().lower().split())
    if not phrase:
        raise ToolInputError("due is empty", hint=HINT)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(UTC)
    if m := _IN.match(phrase):
        seconds = 0.0
        for amount, unit in _PAIR.findall(m[1]):
            if unit not in _UNITS:
                raise ToolInputError(f"due: unknown unit {unit!r}", hint=HINT)
            seconds += float(amount) * _UNITS[unit]
        return (local_now + timedelta(seconds=seconds)).astimezone(UTC)
    if m := _DAY.match(phrase):
        default = time(9, 0) if m[1] == "tomorrow" else time(20, 0) if m[1] == "tonight" else time(17, 0)
        day = local_now + timedelta(days=1 if m[1] == "tomorrow" else 0)
        return _local(day, _clock(m[2], m[3], m[4], default), tz).astimezone(UTC)
    if m := _WEEKDAY.match(phrase):
        ahead = (_WEEKDAYS.index(m[1]) - local_now.weekday()) % 7 or 7
        return _local(local_now + timedelta(days=ahead), _clock(m[2], m[3], m[4], time(9, 0)), tz).astimezone(UTC)
    if m := _BARE.match(phrase):
        moment = _local(local_now, _clock(m[1], m[2], m[3], time(9, 0)), tz)
        if moment <= local_now:
            moment = _local(local_now + timedelta(days=1), moment.timetz().replace(tzinfo=None), tz)
        return moment.astimezone(UTC)
    raise ToolInputError(f"due: cannot read {text!r} as a time", hint=HINT)
