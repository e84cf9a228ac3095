"""The driver around the gossip core: how local intents reach the store."""

from __future__ import annotations

from node.daemon import Node
from protocol.events import Post
from protocol.ledger import Ledger
from protocol.replica import Intent, Plan
from tests.conftest import wait_until


def post_intent(node: Node, content: str) -> Intent:
    assert node.key is not None
    body = Post("social", 3, content)

    def make_body(_ledger: Ledger) -> Post:
        return body

    return Intent(node.key, make_body)


async def test_a_burst_of_local_intents_is_committed_together(node: Node) -> None:
    """Intents submitted in one go wait for the plan in flight and then share one transaction;
    the first is not held back for the others."""
    assert node.driver is not None
    commits: list[int] = []
    node.driver.commit_listeners.append(
        lambda plan: commits.append(len(plan.intents)) if plan.intents else None
    )
    intents = [post_intent(node, f"burst {i}") for i in range(300)]
    for intent in intents:
        assert node.driver.submit(intent)
    await wait_until(lambda: sum(commits) == len(intents), what="every intent committed")
    assert all(intent.event is not None for intent in intents)
    assert commits[0] == 1
    assert len(commits) <= 3, commits
    row = await node.store.fetchone("SELECT COUNT(*) FROM messages WHERE content LIKE 'burst %'")
    assert row is not None
    assert row[0] == len(intents)


async def test_a_single_intent_is_committed_at_once(node: Node) -> None:
    assert node.driver is not None
    plans: list[Plan] = []
    node.driver.commit_listeners.append(plans.append)
    event = await node.driver.publish(post_intent(node, "alone"))
    assert [intent.event for plan in plans for intent in plan.intents] == [event]
