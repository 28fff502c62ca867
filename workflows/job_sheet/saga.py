"""Compensation as a saga: steps pushed as the job does things, unwound last first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Step = Callable[[], Awaitable[None]]


class Saga:
    """Named compensating steps. ``push`` before the action they undo (an action whose answer is
    lost may still have happened; every step is idempotent), ``discard`` once the action is
    settled for good, ``unwind`` to undo what is left, last first."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Step]] = []

    def push(self, name: str, step: Step) -> None:
        self._steps.append((name, step))

    def discard(self, name: str) -> None:
        self._steps = [(n, s) for n, s in self._steps if n != name]

    async def unwind(self) -> None:
        while self._steps:
            _name, step = self._steps.pop()
            await step()
