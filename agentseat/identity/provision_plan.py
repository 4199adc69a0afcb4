"""The plan of `agentseat setup` and `teardown`: steps, each done or to do, and applying them.

A `Step` says what a piece of the agent's seat is, why it is needed, whether it is in place,
and which application permissions of the provisioner can make it (`needs`, any one will do:
setup checks them before it changes anything). `provision.py` and `teardown.py` build plans.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TextIO

import structlog

log = structlog.get_logger(__name__)

Action = Callable[[], Awaitable[None]]


@dataclass
class Step:
    """One piece of the agent's seat: what it is, why it is needed, and whether it is in place."""

    what: str
    why: str
    done: bool = False
    action: Action | None = field(default=None, repr=False)
    needs: tuple[str, ...] = ()  # application permissions of the provisioner, any one of which can do it


@dataclass
class Plan:
    title: str
    mark: str = "+"  # how a step to do is shown: "+" adds, "-" deletes
    steps: list[Step] = field(default_factory=list)

    def check(self, done: bool, done_text: str, todo_text: str, why: str, action: Action | None = None,
              needs: tuple[str, ...] = ()) -> None:
        self.steps.append(Step(done_text if done else todo_text, why, done, None if done else action, needs))

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if not s.done]

    def render(self) -> str:
        lines = [self.title]
        for step in self.steps:
            lines.append(f"  {'✓' if step.done else self.mark} {step.what}")
            if not step.done:
                lines.append(f"      why: {step.why}")
        return "\n".join(lines)


async def apply_plan(plan: Plan, err: TextIO) -> int:
    """Run every step not done yet, in order, with a progress line on stderr for each."""
    count = 0
    for step in plan.changes:
        print(f"  → {step.what}", file=err, flush=True)
        assert step.action is not None
        await step.action()
        log.info("provision_step_applied", step=step.what)
        count += 1
    return count
