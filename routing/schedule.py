"""When to recompute routes: one recompute per burst of topology changes.

Link-state records arrive in bursts (a node joins, a partition heals, every neighbour refreshes
at once), and a full recompute over 10,000 nodes costs a few hundred milliseconds of CPU
(bench/routing.py). So a change only
arms a deadline: the recompute runs once the mesh has been quiet for ``quiet_s``, but no later
than ``max_delay_s`` after the first change that is still pending (so a steady trickle cannot
starve it), and never sooner than ``min_interval_s`` after the previous recompute (so a steady
trickle cannot run it back to back either). Same shape as the protocol's timers: the caller
reports changes, asks `deadline` for its timer, and calls `due` when the timer fires.
"""

from __future__ import annotations

#: Quiet time that ends a burst: a few link RTTs on a LAN, well under the 100 ms sync target.
DEFAULT_QUIET_S = 0.05
#: Longest a change waits while changes keep coming. A failed next hop does not wait for this:
#: the sender retries at once over `RouteTable.alternate_avoiding`.
DEFAULT_MAX_DELAY_S = 2.0
#: Shortest time between two recomputes: at 10,000 nodes this keeps routing under about a
#: quarter of one core however the changes arrive.
DEFAULT_MIN_INTERVAL_S = 1.0


class RecomputeSchedule:
    """Debounces topology changes into route recomputes; pure, every call takes ``now``."""

    __slots__ = ("_first", "_last", "_last_run", "max_delay_s", "min_interval_s", "quiet_s")

    def __init__(
        self,
        *,
        quiet_s: float = DEFAULT_QUIET_S,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
    ) -> None:
        if quiet_s < 0 or min_interval_s < 0:
            raise ValueError("quiet_s and min_interval_s must not be negative")
        if max_delay_s < quiet_s:
            raise ValueError("max_delay_s must be at least quiet_s")
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s
        self.min_interval_s = min_interval_s
        #: Time of the first and the latest change not yet recomputed; None when none is pending.
        self._first: float | None = None
        self._last: float | None = None
        #: Time of the previous recompute.
        self._last_run: float | None = None

    @property
    def pending(self) -> bool:
        """Whether a change is waiting for a recompute."""
        return self._first is not None

    def changed(self, now: float) -> None:
        """Report a topology change at ``now``."""
        if self._first is None:
            self._first = now
        self._last = now if self._last is None else max(self._last, now)

    def deadline(self) -> float | None:
        """When to recompute, or None when nothing is pending (the caller's timer)."""
        if self._first is None or self._last is None:
            return None
        at = min(self._last + self.quiet_s, self._first + self.max_delay_s)
        if self._last_run is not None:
            at = max(at, self._last_run + self.min_interval_s)
        return at

    def due(self, now: float) -> bool:
        """True when the recompute should run now; the pending changes then count as done."""
        at = self.deadline()
        if at is None or now < at:
            return False
        self._first = self._last = None
        self._last_run = now
        return True
