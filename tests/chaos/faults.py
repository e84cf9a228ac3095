"""The fault schedule: a pure function of the seed and the run's shape.

Same seed, same node count, same duration, same spacing and the same fault kinds give the same
schedule, step for step; `checker` regenerates it from the manifest to show that (invariant 7).

One fault starts every ``every_s`` seconds (with a little jitter) and is healed before the next
one starts, so each fault's effect can be told apart. The first faults cover every kind once in a
seeded order (a short run sees each kind); after that kinds are drawn at random. The double spend
happens exactly once, in the middle of a partition of its own: one half of the fork goes to a
node on each side.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass

#: Kinds of fault. "netem" is loss and delay (when the kernel has netem), "throttle" the tbf
#: stand-in otherwise.
KILL = "kill9"
PAUSE = "pause"
PARTITION = "partition"
NETEM = "netem"
THROTTLE = "throttle"
DOUBLE_SPEND = "double_spend"

#: (least, most) seconds each kind of fault lasts, before the cap of 80% of the spacing.
DURATIONS = {
    KILL: (0.5, 3.0),
    PAUSE: (2.0, 5.0),
    PARTITION: (3.0, 7.0),
    NETEM: (3.0, 7.0),
    THROTTLE: (3.0, 7.0),
    DOUBLE_SPEND: (5.0, 8.0),
}
#: Weights of the kinds drawn after the first round.
WEIGHTS = {KILL: 3, PAUSE: 2, PARTITION: 3, NETEM: 2, THROTTLE: 2}


@dataclass(frozen=True, slots=True)
class Fault:
    number: int
    kind: str
    #: Seconds after the start of the fault phase.
    start: float
    duration: float
    #: The node (kill, pause, link faults) or the minority side of a partition.
    nodes: tuple[int, ...]
    #: Link fault parameters (netem: loss %, delay ms; throttle: kbit/s, queue ms).
    params: tuple[float, ...] = ()
    #: Double spend: the node holding the account, and the nodes that get each half.
    targets: tuple[int, ...] = ()

    @property
    def end(self) -> float:
        return self.start + self.duration

    def describe(self) -> str:
        where = ",".join(str(n) for n in self.nodes)
        text = f"#{self.number:<3} t={self.start:7.2f}s +{self.duration:4.2f}s {self.kind:<12}"
        if self.kind == PARTITION:
            return f"{text} nodes {{{where}}} cut off from the rest"
        if self.kind == DOUBLE_SPEND:
            holder, a, b = self.targets
            return (
                f"{text} nodes {{{where}}} cut off; account held by node {holder} signs two sends "
                f"for one seq, halves to node {a} and node {b}"
            )
        if self.kind == NETEM:
            return f"{text} node {where}: loss {self.params[0]:g}%, delay {self.params[1]:g} ms"
        if self.kind == THROTTLE:
            return f"{text} node {where}: {self.params[0]:g} kbit/s, queue {self.params[1]:g} ms"
        return f"{text} node {where}"


@dataclass(frozen=True, slots=True)
class Shape:
    """Everything the schedule depends on besides the seed."""

    nodes: int
    duration_s: float
    every_s: float
    netem: bool
    double_spend: bool = True

    def kinds(self) -> list[str]:
        kinds = [KILL, PAUSE, PARTITION, NETEM if self.netem else THROTTLE]
        if self.double_spend:
            kinds.append(DOUBLE_SPEND)
        return kinds


def make_schedule(seed: int, shape: Shape) -> list[Fault]:
    if shape.nodes < 3:
        raise ValueError("a chaos run needs at least 3 nodes (two sides and a holder)")
    rng = random.Random(f"chaos-schedule/{seed}")
    first = shape.kinds()
    rng.shuffle(first)
    # The double spend comes early enough that its fork has time to spread and be healed.
    if DOUBLE_SPEND in first:
        first.remove(DOUBLE_SPEND)
        first.insert(min(rng.randrange(1, 3), len(first)), DOUBLE_SPEND)
    link_kind = NETEM if shape.netem else THROTTLE
    drawn = [KILL, PAUSE, PARTITION, link_kind]
    weights = [WEIGHTS[k] for k in drawn]
    faults: list[Fault] = []
    count = int(shape.duration_s // shape.every_s) if shape.every_s > 0 else 0
    for number in range(count):
        kind = first[number] if number < len(first) else rng.choices(drawn, weights)[0]
        start = number * shape.every_s + rng.uniform(0, 0.1 * shape.every_s)
        low, high = DURATIONS[kind]
        cap = max(0.5, 0.8 * shape.every_s - (start - number * shape.every_s))
        duration = round(min(rng.uniform(low, high), cap), 2)
        faults.append(_fault(rng, number, kind, round(start, 2), duration, shape.nodes))
    return faults


def _fault(
    rng: random.Random, number: int, kind: str, start: float, duration: float, nodes: int
) -> Fault:
    everyone = list(range(nodes))
    if kind in (PARTITION, DOUBLE_SPEND):
        size = rng.randint(1, nodes // 2)
        side = tuple(sorted(rng.sample(everyone, size)))
        if kind == PARTITION:
            return Fault(number, kind, start, duration, side)
        rest = [n for n in everyone if n not in side]
        holder = rng.choice(everyone)
        return Fault(
            number,
            kind,
            start,
            duration,
            side,
            targets=(holder, rng.choice(side), rng.choice(rest)),
        )
    node = rng.choice(everyone)
    if kind == NETEM:
        return Fault(number, kind, start, duration, (node,), (rng.choice((5, 10, 20)), 100))
    if kind == THROTTLE:
        return Fault(number, kind, start, duration, (node,), (rng.choice((64, 128, 256)), 200))
    return Fault(number, kind, start, duration, (node,))


def mallory_holder(schedule: list[Fault], seed: int, nodes: int) -> int:
    """The node that holds the double-spending account (from the schedule, else from the seed)."""
    for fault in schedule:
        if fault.kind == DOUBLE_SPEND:
            return fault.targets[0]
    return random.Random(f"chaos-holder/{seed}").randrange(nodes)


def to_json(schedule: list[Fault]) -> list[dict[str, object]]:
    return [asdict(fault) for fault in schedule]


def from_json(items: list[dict[str, object]]) -> list[Fault]:
    out = []
    for item in items:
        fields = dict(item)
        for key in ("nodes", "params", "targets"):
            fields[key] = tuple(fields.get(key, ()))  # type: ignore[arg-type]
        out.append(Fault(**fields))  # type: ignore[arg-type]
    return out


def fingerprint(schedule: list[Fault]) -> str:
    import hashlib

    text = json.dumps(to_json(schedule), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
