"""JSON API for the ledger (accounts, transfers) and messages.

Amounts are decimal strings at this edge ("12.34") and integer cents inside. A request gets its
2xx only after its event is committed to the store; a rule it breaks comes back as a 4xx with the
rule's code (``overdraft``, ``double_claim``...).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from node.http import NODE_KEY, ApiInputError, json_response, read_json
from protocol.amounts import AmountError, format_amount, parse_amount
from protocol.events import Enroll, Event, Post, Send, valid_channel
from protocol.identity import KeyFormatError, parse_key_id
from protocol.limits import MAX_MEMO_BYTES, MAX_NAME_BYTES, MAX_POST_CONTENT_BYTES
from protocol.replica import Intent

if TYPE_CHECKING:
    from node.daemon import Node

#: Most rows one list request returns.
MAX_LIST = 1_000
#: Transfers the ledger summary lists (newest first).
RECENT_TRANSFERS = 20
SUBSCRIPTIONS_META = "subscriptions"


def _node(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def _text_field(body: dict[str, Any], name: str, max_bytes: int, default: str | None = None) -> str:
    value = body.get(name, default)
    if value is None:
        raise ApiInputError(f"field {name!r} is required", code="missing_field")
    if not isinstance(value, str):
        raise ApiInputError(f"field {name!r} must be a string", code="invalid_field")
    if len(value.encode("utf-8")) > max_bytes:
        raise ApiInputError(
            f"field {name!r} is longer than {max_bytes} bytes", code="too_large", status=413
        )
    return value


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise ApiInputError(f"unknown fields: {', '.join(extra)}", code="unknown_field")


def _account_id(text: Any, name: str) -> bytes:
    if not isinstance(text, str):
        raise ApiInputError(f"field {name!r} must be an account id", code="invalid_field")
    try:
        return parse_key_id(text)
    except KeyFormatError as exc:
        raise ApiInputError(f"{name}: {exc}", code="invalid_account") from None


def _limit(request: web.Request, default: int = 100) -> int:
    text = request.query.get("limit", str(default))
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST:
        raise ApiInputError(f"limit must be 1..{MAX_LIST}", code="invalid_query")
    return int(text)


def _require_network(node: Node) -> None:
    if node.replica.network_id is None:
        raise ApiInputError(
            "this node has no genesis yet: wait for a peer, or found a mesh",
            code="no_genesis",
            status=409,
        )


async def _publish(node: Node, intent: Intent) -> Event:
    """Publish and wait for the commit; in test mode, record the acknowledgement."""
    event = await node.publish(intent)
    if node.history is not None:
        node.history.record("ack", event.id, kind=event.kind)
    return event


# --- accounts ------------------------------------------------------------------------------------


async def create_account(request: web.Request) -> web.Response:
    node = _node(request)
    body = await read_json(request) if request.body_exists else {}
    _only(body, {"name"})
    name = _text_field(body, "name", MAX_NAME_BYTES, default="")
    _require_network(node)
    key = node.keyring.create()
    local = node.key
    assert local is not None
    enrol = Enroll(name, local.public)
    try:
        event = await _publish(node, Intent(key, lambda _ledger: enrol))
    except BaseException:
        node.keyring.remove(key.public)
        raise
    return json_response({"account": key.id, "event": event.id.hex(), "name": name}, status=201)


def enrolled_accounts(node: Node) -> list[bytes]:
    """Every enrolled account, oldest enrolment first (the order the API and the page list)."""
    ledger = node.replica.ledger
    return sorted(ledger.accounts, key=lambda a: (ledger.accounts[a].enrolled_at, a))


def account_view(node: Node, account: bytes) -> dict[str, Any]:
    """One account as the API shows it (the status page reads the same view)."""
    ledger = node.replica.ledger
    info = ledger.accounts.get(account)
    row = ledger.row(account)
    return {
        "id": account.hex(),
        "name": info.name if info else ("pool" if account == ledger.pool else ""),
        "node": info.node.hex() if info else None,
        "enrolled_at": info.enrolled_at if info else None,
        "pool": account == ledger.pool,
        "held": account in node.keyring,
        "balance": format_amount(row.balance),
        "face_balance": format_amount(row.face),
        "received": format_amount(row.received),
        "sent": format_amount(row.sent),
        "frozen_at": ledger.frozen.get(account),
    }


async def list_accounts(request: web.Request) -> web.Response:
    node = _node(request)
    limit = _limit(request)
    held_only = request.query.get("held") in ("1", "true", "yes")
    ids = enrolled_accounts(node)
    if held_only:
        ids = [a for a in ids if a in node.keyring]
    return json_response(
        {"accounts": [account_view(node, a) for a in ids[:limit]], "total": len(ids)}
    )


async def show_account(request: web.Request) -> web.Response:
    node = _node(request)
    account = _account_id(request.match_info["account"], "account")
    ledger = node.replica.ledger
    if account not in ledger.accounts and account != ledger.pool:
        raise ApiInputError("no such account", code="unknown_account", status=404)
    view = account_view(node, account)
    rows = await node.events.account_history(account, _limit(request))
    view["history"] = [
        {
            "send": bytes(r[0]).hex(),
            "direction": "out" if bytes(r[1]) == account else "in",
            "counterparty": (bytes(r[2]) if bytes(r[1]) == account else bytes(r[1])).hex(),
            "amount": format_amount(int(r[3])),
            "purpose": str(r[4]),
            "memo": str(r[5]),
            "ts": int(r[6]),
            "state": str(r[7]),
            "claimed": r[8] is not None,
        }
        for r in rows
    ]
    return json_response(view)


# --- transfers -----------------------------------------------------------------------------------


async def create_transfer(request: web.Request) -> web.Response:
    node = _node(request)
    body = await read_json(request)
    _only(body, {"from", "to", "amount", "memo"})
    sender = _account_id(body.get("from"), "from")
    recipient = _account_id(body.get("to"), "to")
    amount_text = body.get("amount")
    if isinstance(amount_text, int) and not isinstance(amount_text, bool):
        amount_text = str(amount_text)
    try:
        amount = parse_amount(amount_text)  # type: ignore[arg-type]
    except AmountError as exc:
        raise ApiInputError(str(exc), code="invalid_amount") from None
    memo = _text_field(body, "memo", MAX_MEMO_BYTES, default="")
    _require_network(node)
    key = node.keyring.get(sender)
    if key is None:
        raise ApiInputError(
            "this node does not hold the key of the 'from' account", code="not_held", status=403
        )
    ledger = node.replica.ledger
    if recipient not in ledger.accounts and recipient != ledger.pool:
        raise ApiInputError("the 'to' account is not enrolled", code="unknown_account", status=404)
    send = Send(recipient, amount, "transfer", memo)
    event = await _publish(node, Intent(key, lambda _ledger: send))
    return json_response(
        {
            "id": event.id.hex(),
            "from": sender.hex(),
            "to": recipient.hex(),
            "amount": format_amount(amount),
            "memo": memo,
        },
        status=201,
    )


async def ledger_summary(request: web.Request) -> web.Response:
    return json_response(await ledger_view(_node(request)))


async def ledger_view(node: Node) -> dict[str, Any]:
    """The ledger summary as the API shows it (the status page reads the same view)."""
    ledger = node.replica.ledger
    if ledger.genesis is None or ledger.pool is None:
        return {"genesis": None, "state_hash": ledger.state_hash().hex()}
    genesis = ledger.genesis
    now_ms = node.gossip.wall_ms(node.driver.now) if node.gossip and node.driver else 0
    recent = await node.events.recent_sends(RECENT_TRANSFERS)
    return {
        "state_hash": ledger.state_hash().hex(),
        "network_id": node.replica.network_id.hex() if node.replica.network_id else None,
        "genesis": {
            "name": genesis.name,
            "pool": ledger.pool.hex(),
            "total": format_amount(genesis.total),
            "weekly_flow": format_amount(genesis.weekly_flow),
            "housing_credit": format_amount(genesis.housing_credit),
            "investment_pool": format_amount(genesis.investment_pool),
            "period_s": genesis.period_s,
            "ts": ledger.genesis_ts,
        },
        "total": format_amount(ledger.total),
        "pool_balance": format_amount(ledger.balance.get(ledger.pool, 0)),
        "unclaimed": format_amount(ledger.unclaimed_total()),
        "accounts": len(ledger.accounts),
        "conserved": ledger.conserved(),
        "period": ledger.period_at(now_ms),
        "pool_held": ledger.pool in node.keyring,
        "frozen": [{"author": a.hex(), "seq": s} for a, s in sorted(ledger.frozen.items())],
        "recent": [
            {
                "send": bytes(r[0]).hex(),
                "from": bytes(r[1]).hex(),
                "to": bytes(r[2]).hex(),
                "amount": format_amount(int(r[3])),
                "purpose": str(r[4]),
                "ts": int(r[6]),
                "state": str(r[7]),
            }
            for r in recent
        ],
    }


# --- messages ------------------------------------------------------------------------------------


async def create_message(request: web.Request) -> web.Response:
    node = _node(request)
    body = await read_json(request)
    _only(body, {"content", "channel", "priority"})
    content = _text_field(body, "content", MAX_POST_CONTENT_BYTES)
    if not content:
        raise ApiInputError("field 'content' must not be empty", code="invalid_field")
    channel = _text_field(body, "channel", 64, default="social")
    if not valid_channel(channel):
        raise ApiInputError(
            "channel names use a-z, 0-9, '-' and '_' (at most 32 bytes)", code="invalid_channel"
        )
    priority = body.get("priority", 3)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= 5:
        raise ApiInputError("priority must be an integer 1..5", code="invalid_priority")
    _require_network(node)
    key = node.key
    assert key is not None
    post = Post(channel, priority, content)
    event = await _publish(node, Intent(key, lambda _ledger: post))
    return json_response(
        {"id": event.id.hex(), "channel": channel, "priority": priority, "ts": event.ts},
        status=201,
    )


async def list_messages(request: web.Request) -> web.Response:
    node = _node(request)
    channel = request.query.get("channel") or None
    if channel is not None and not valid_channel(channel):
        raise ApiInputError("invalid channel name", code="invalid_channel")
    rows = await node.events.messages(channel, _limit(request))
    return json_response(
        {
            "messages": [
                {
                    "id": r.id.hex(),
                    "author": r.author.hex(),
                    "channel": r.channel,
                    "priority": r.priority,
                    "content": r.content,
                    "ts": r.ts,
                    "first_seen": r.first_seen,
                    "from_peer": r.from_peer.hex() if r.from_peer else None,
                    "forwarded_to": r.forwarded_to,
                    "reach": node.reach_estimate(r.id),
                }
                for r in rows
            ]
        }
    )


async def get_subscriptions(request: web.Request) -> web.Response:
    return json_response({"channels": _node(request).subscriptions})


async def put_subscriptions(request: web.Request) -> web.Response:
    node = _node(request)
    body = await read_json(request)
    _only(body, {"channels"})
    channels = body.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ApiInputError("'channels' must be a list of channel names", code="invalid_field")
    if len(channels) > 64:
        raise ApiInputError("at most 64 channels", code="too_large", status=413)
    bad = [c for c in channels if not valid_channel(c)]
    if bad:
        raise ApiInputError(f"invalid channel names: {bad}", code="invalid_channel")
    node.subscriptions = sorted(set(channels))
    await node.store.set_meta(SUBSCRIPTIONS_META, json.dumps(node.subscriptions).encode())
    return json_response({"channels": node.subscriptions})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/accounts", create_account)
    app.router.add_get("/api/accounts", list_accounts)
    app.router.add_get("/api/accounts/{account}", show_account)
    app.router.add_post("/api/transfers", create_transfer)
    app.router.add_get("/api/ledger", ledger_summary)
    app.router.add_post("/api/messages", create_message)
    app.router.add_get("/api/messages", list_messages)
    app.router.add_get("/api/subscriptions", get_subscriptions)
    app.router.add_put("/api/subscriptions", put_subscriptions)
