"""When a slot's candidate statuses are written: at once, after a short wait, or by the next reconcile.

They always come after the binding. A slot still changing (a burst arriving) leaves them to its next
reconcile, and a slot swapped again soon after its last swap waits a moment for the next change, so a
slot swapped back and forth writes them for where it ends rather than once per swap. While swaps of
the slot's namespace wait for the swap budget (a burst), the statuses wait too: the bindings go to the
API server first, and a slot that changes meanwhile writes its statuses once, for where it ends.
Nothing waits longer than `max_seconds` in all. Pure: the runtime feeds it the clock and the flags.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from oneiric_operator.resolution import SlotKey


class Pace(enum.Enum):
    WRITE = "write"
    """Write the statuses now."""
    WAIT = "wait"
    """Wait up to `wait_seconds` for the slot to change; write them if it does not."""
    LATER = "later"
    """The slot changed meanwhile: its next reconcile writes them."""
    YIELD = "yield"
    """Swaps are waiting for the budget: look again shortly (the slot may change meanwhile)."""


@dataclass
class StatusPacer:
    wait_seconds: float = 1.0
    max_seconds: float = 5.0
    _owed_since: dict[SlotKey, float] = field(default_factory=dict)
    _last_swap: dict[SlotKey, float] = field(default_factory=dict)

    def pace(self, slot: SlotKey, *, now: float, changed: bool, swapped: bool, busy: bool = False) -> Pace:
        """`busy`: swaps of the slot's namespace are waiting for the swap budget."""
        owed = self._owed_since.setdefault(slot, now)
        overdue = now - owed >= self.max_seconds
        previous = self._last_swap.get(slot)
        if swapped:
            self._last_swap[slot] = now
        if overdue:
            return Pace.WRITE
        if changed:
            return Pace.LATER
        if busy:
            return Pace.YIELD
        hot = swapped and previous is not None and now - previous < self.max_seconds
        return Pace.WAIT if hot else Pace.WRITE

    def written(self, slot: SlotKey) -> None:
        self._owed_since.pop(slot, None)

    def forget(self, slot: SlotKey) -> None:
        """The slot is gone: nothing is owed and nothing kept for it."""
        self._owed_since.pop(slot, None)
        self._last_swap.pop(slot, None)
