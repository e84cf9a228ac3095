"""What makes a node sign a new link-state record between refreshes: a new or lost neighbour, or
a link that got much worse; not jitter, and not a link that got better (settling RTTs)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from node.router import LOSS_SLACK_PERMILLE, RTT_FACTOR, RTT_SLACK_US, Router
from protocol.frames import LinkNeighbour
from protocol.identity import SigningKey

PEER = SigningKey.for_label("damping/peer").public
OTHER = SigningKey.for_label("damping/other").public


def router() -> Router:
    node: Any = SimpleNamespace(key=SigningKey.for_label("damping/me"))
    driver: Any = SimpleNamespace(gossip=None)
    made = Router(node, driver)
    made._last_sent = {PEER: LinkNeighbour(PEER, 10_000, 0)}
    return made


def link(rtt_us: int, loss_permille: int = 0, node: bytes = PEER) -> tuple[LinkNeighbour, ...]:
    return (LinkNeighbour(node, rtt_us, loss_permille),)


def test_only_a_link_much_worse_than_signed_is_a_metric_change() -> None:
    made = router()
    worst_quiet = RTT_FACTOR * 10_000 + RTT_SLACK_US
    assert not made._metrics_changed(link(worst_quiet))
    assert made._metrics_changed(link(worst_quiet + 1))
    assert not made._metrics_changed(link(1))  # better: waits for the refresh
    assert not made._metrics_changed(link(10_000, LOSS_SLACK_PERMILLE))
    assert made._metrics_changed(link(10_000, LOSS_SLACK_PERMILLE + 1))


def test_a_new_or_lost_neighbour_is_a_topology_change() -> None:
    made = router()
    assert not made._topology_changed(link(10_000))
    assert made._topology_changed(link(10_000, node=OTHER))
    assert made._topology_changed(())
