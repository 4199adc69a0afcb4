"""The runtime's clock: one scheduler, run by the runtime owner, that turns due times into
inbox events (promise reminders, the daily summary).

It stores its next due time and sleeps until then; a poke (poke.py) from any process that
adds a promise wakes it at once, and a wake-up at least every `RECHECK` seconds notices a
wall-clock jump or a suspend. Nothing is polled in between.
"""

from .poke import poke
from .scheduler import Clock

__all__ = ["Clock", "poke"]
