"""Intake processes: more processes that take Graph's POSTs on the runtime's socket (AGENTSEAT_INTAKE_PROCESSES).

parent.py starts and feeds them from the runtime; child.py is one of them; wire.py is the
control line between the two.
"""

from .parent import IntakeWorkers, Lent

__all__ = ["IntakeWorkers", "Lent"]
