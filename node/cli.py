"""The `liberation-node` command line.

Every failure the user can cause ends in one line on stderr and a documented exit code (0 ok,
1 runtime error, 2 bad configuration or usage, 3 no node running); never a traceback. Client
commands talk to the local API with urllib so that they start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node import __version__
from node.errors import ApiError, NotRunning, UsageError
from protocol.errors import LiberationError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3

#: Seconds a client command waits for the local API.
CLIENT_TIMEOUT_S = 30.0


def _config_path(args: argparse.Namespace) -> Path | None:
    explicit = getattr(args, "config", None)
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("LIBERATION_CONFIG")
    return Path(from_env) if from_env else None


def _load(args: argparse.Namespace, overrides: dict[str, dict[str, Any]] | None = None) -> Any:
    from node.config import load_config

    return load_config(_config_path(args), overrides=overrides or {})


# --- client side: the local API ----------------------------------------------------------------


class ApiClient:
    """A tiny JSON client for the node's loopback API."""

    def __init__(self, host: str, port: int) -> None:
        self.base = f"http://{host}:{port}"
        self.where = f"{host}:{port}"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return json.loads(self.raw(method, path, body) or b"null")

    def raw(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        import urllib.error  # here, not at the top: `run` never needs it
        import urllib.request

        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1 (validated)
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_S) as response:  # noqa: S310
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read())
                detail = f"{payload.get('error')}: {payload.get('detail')}"
            except (ValueError, AttributeError):
                detail = f"HTTP {exc.code}"
            raise ApiError(detail) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotRunning(
                f"no liberation-node is answering on {self.where} ({reason}); "
                "start one with `liberation-node run` or pass --status-port"
            ) from None


def _client(args: argparse.Namespace) -> ApiClient:
    config = _load(args)
    port = (
        args.status_port if getattr(args, "status_port", None) is not None else config.status.port
    )
    return ApiClient(config.status.host, port)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


# --- commands ----------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from node.datadir import DataDir
    from node.founding import found_offline

    config = _load(args, {"node": {"data_dir": args.data_dir}})
    data_dir = DataDir(config.node.data_dir)
    data_dir.ensure()
    genesis = None
    with data_dir.lock():
        key, created = data_dir.node_key(create=True)
        if args.genesis:
            name = args.name or config.ledger.mesh_name
            period = args.period or config.ledger.period_s
            if not 1 <= period <= 10 * 365 * 86_400:
                raise UsageError("--period is 1 second .. 10 years")
            genesis = asyncio.run(found_offline(data_dir, name, period, int(time.time() * 1000)))
    info: dict[str, Any] = {"node_id": key.id, "data_dir": str(data_dir.path), "created": created}
    if genesis is not None:
        info["network_id"] = genesis.id.hex()
        info["pool"] = genesis.author.hex()
    if args.json:
        _print_json(info)
        return EXIT_OK
    print(key.id)
    verb = "created" if created else "already had"
    print(f"({verb} the node key in {data_dir.path})")
    if genesis is not None:
        print(f"founded a mesh: network id {genesis.id.hex()}, pool {genesis.author.hex()}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    overrides: dict[str, dict[str, Any]] = {
        "node": {"data_dir": args.data_dir},
        "mesh": {"port": args.mesh_port},
        "status": {"port": args.status_port},
        "discovery": {
            "bootstrap": tuple(args.bootstrap) if args.bootstrap else None,
            "mdns": False if args.no_mdns else None,
        },
    }
    config = _load(args, overrides)
    from node import log
    from node.runner import run_node

    log.configure(config.node.log_level)
    return run_node(config)


def cmd_status(args: argparse.Namespace) -> int:
    status = _client(args).request("GET", "/api/status")
    if args.json:
        _print_json(status)
        return EXIT_OK
    ledger = status.get("ledger") or {}
    lines = [
        f"node      {status.get('node_id')}",
        f"name      {status.get('name') or '(unnamed)'}",
        f"version   {status.get('version')}",
        f"uptime    {status.get('uptime_s', 0):.1f} s",
        f"network   {status.get('network_id') or '(no genesis yet)'}",
        f"peers     {status.get('peers')}",
        f"events    {status.get('events')}",
    ]
    sync = status.get("sync") or {}
    if sync.get("syncing"):
        width = 30
        filled = int(width * float(sync.get("percent", 0)) / 100)
        bar = "#" * filled + "-" * (width - filled)
        lines.append(
            f"catch-up  [{bar}] {sync.get('percent')}% "
            f"({sync.get('fetched')} fetched, {sync.get('missing')} to go)"
        )
    if ledger:
        lines.append(f"pool      {ledger.get('pool_balance')}")
        lines.append(f"accounts  {ledger.get('accounts')}")
        lines.append(f"state     {ledger.get('state_hash')}")
    print("\n".join(lines))
    return EXIT_OK


def _show(args: argparse.Namespace, data: Any, lines: list[str]) -> int:
    if args.json:
        _print_json(data)
    else:
        print("\n".join(lines))
    return EXIT_OK


def cmd_account_new(args: argparse.Namespace) -> int:
    created = _client(args).request("POST", "/api/accounts", {"name": args.name or ""})
    return _show(args, created, [created["account"]])


def cmd_account_list(args: argparse.Namespace) -> int:
    query = f"?limit={args.limit}" + ("&held=1" if args.held else "")
    data = _client(args).request("GET", f"/api/accounts{query}")
    lines = [
        f"{a['id']}  {a['balance']:>20}  {'held ' if a['held'] else '     '}{a['name']}"
        for a in data["accounts"]
    ] or ["(no accounts)"]
    return _show(args, data, lines)


def cmd_account_show(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", f"/api/accounts/{args.account}")
    lines = [
        f"account   {data['id']}",
        f"name      {data['name'] or '(none)'}",
        f"balance   {data['balance']}",
        f"received  {data['received']}",
        f"sent      {data['sent']}",
        f"held here {'yes' if data['held'] else 'no'}",
    ]
    if data.get("frozen_at") is not None:
        lines.append(f"FROZEN    from seq {data['frozen_at']} (this key forked)")
    for h in data.get("history", [])[:20]:
        sign = "-" if h["direction"] == "out" else "+"
        party = h["counterparty"][:16]
        lines.append(f"  {sign}{h['amount']:>18}  {h['purpose']:<10} {h['state']:<9} {party}")
    return _show(args, data, lines)


def cmd_balance(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", f"/api/accounts/{args.account}")
    return _show(args, {"account": data["id"], "balance": data["balance"]}, [data["balance"]])


def cmd_transfer(args: argparse.Namespace) -> int:
    body = {"from": args.sender, "to": args.recipient, "amount": args.amount, "memo": args.memo}
    data = _client(args).request("POST", "/api/transfers", body)
    return _show(args, data, [f"sent {data['amount']}: {data['id']}"])


def cmd_post(args: argparse.Namespace) -> int:
    body = {"content": args.content, "channel": args.channel, "priority": args.priority}
    data = _client(args).request("POST", "/api/messages", body)
    return _show(args, data, [data["id"]])


def cmd_messages(args: argparse.Namespace) -> int:
    query = f"?limit={args.limit}" + (f"&channel={args.channel}" if args.channel else "")
    data = _client(args).request("GET", f"/api/messages{query}")
    lines = [
        f"[{m['channel']}] p{m['priority']} {m['author'][:8]}: {m['content']}"
        for m in data["messages"]
    ] or ["(no messages)"]
    return _show(args, data, lines)


def cmd_ledger(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/ledger")
    if not data.get("genesis"):
        return _show(args, data, ["(no genesis yet)"])
    lines = [
        f"mesh        {data['genesis']['name']}",
        f"total       {data['total']}",
        f"pool        {data['pool_balance']}",
        f"unclaimed   {data['unclaimed']}",
        f"accounts    {data['accounts']}",
        f"conserved   {'yes' if data['conserved'] else 'NO'}",
        f"state hash  {data['state_hash']}",
    ]
    return _show(args, data, lines)


def cmd_send(args: argparse.Namespace) -> int:
    data = _client(args).request("POST", "/api/direct", {"to": args.to, "content": args.content})
    path = " -> ".join(hop[:8] for hop in data["path"])
    return _show(
        args, data, [f"delivered in {data['hops']} hops ({data['rtt_ms']:.1f} ms): {path}"]
    )


def cmd_route(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", f"/api/routes/{args.node}")
    lines = []
    for rank, route in enumerate(data["routes"]):
        path = " -> ".join(hop[:8] for hop in route["path"])
        label = "best" if rank == 0 else f"alt {rank}"
        lines.append(
            f"{label:<6} {route['hops']} hops  {route['latency_ms']:8.3f} ms  "
            f"reliability {route['reliability']:.3f}  {path}"
        )
    return _show(args, data, lines)


def cmd_routes(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/routes")
    lines = [
        f"{r['destination']}  {r['hops']} hops  via {(r['next_hop'] or '-')[:16]}  "
        f"{r['latency_ms']:.3f} ms"
        for r in data["routes"]
    ] or ["(no routes yet)"]
    return _show(args, data, lines)


def cmd_peers(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/peers")
    lines = [
        f"{p['id']}  {p['via']:<9} {p['address']:<24} "
        f"rtt {p['rtt_ms'] if p['rtt_ms'] is not None else '-'} ms  score {p['score']}"
        for p in data["peers"]
    ] or ["(no peers)"]
    return _show(args, data, lines)


def cmd_subscriptions(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.set is not None:
        data = client.request("PUT", "/api/subscriptions", {"channels": args.set})
    else:
        data = client.request("GET", "/api/subscriptions")
    return _show(args, data, [", ".join(data["channels"]) or "(none)"])


def cmd_topology(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/topology")
    lines = [f"{len(data['nodes'])} nodes, {len(data['edges'])} links"]
    lines += [
        f"  {e['a'][:8]} -- {e['b'][:8]}  {e['latency_ms']} ms  loss {e['loss']}"
        for e in data["edges"]
    ]
    return _show(args, data, lines)


def cmd_inbox(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/direct")
    lines = [f"{m['from'][:8]} ({m['hops']} hops): {m['content']}" for m in data["messages"]] or [
        "(no direct messages)"
    ]
    return _show(args, data, lines)


def cmd_metrics(args: argparse.Namespace) -> int:
    text = _client(args).raw("GET", "/metrics").decode("utf-8", "replace")
    if not args.json:
        print(text, end="")
        return EXIT_OK
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    _print_json(samples)
    return EXIT_OK


def cmd_openapi(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/openapi.json")
    if args.json:
        _print_json(data)
        return EXIT_OK
    for path, operations in data["paths"].items():
        for method, operation in operations.items():
            print(f"{method.upper():<6} {path:<28} {operation.get('summary', '')}")
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="TOML configuration file (default: $LIBERATION_CONFIG)"
    )


def _add_client(parser: argparse.ArgumentParser) -> None:
    _add_config(parser)
    parser.add_argument("--status-port", type=int, metavar="S", help="status port of the node")
    parser.add_argument("--json", action="store_true", help="print JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liberation-node",
        description="A peer-to-peer mesh node: signed ledger and messages over WebRTC.",
    )
    parser.add_argument("--version", action="version", version=f"liberation-node {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = commands.add_parser("init", help="create the data directory and node key")
    _add_config(init)
    init.add_argument("--data-dir", metavar="D", help="data directory")
    init.add_argument(
        "--genesis", action="store_true", help="found a new mesh: create its pool key and genesis"
    )
    init.add_argument("--name", metavar="NAME", help="name of the new mesh (with --genesis)")
    init.add_argument(
        "--period", type=int, metavar="S", help="distribution period in seconds (with --genesis)"
    )
    init.add_argument("--json", action="store_true", help="print JSON")
    init.set_defaults(handler=cmd_init)

    run = commands.add_parser("run", help="run the node until SIGINT or SIGTERM")
    _add_config(run)
    run.add_argument("--data-dir", metavar="D", help="data directory")
    run.add_argument("--mesh-port", type=int, metavar="P", help="mesh (signalling) port")
    run.add_argument("--status-port", type=int, metavar="S", help="status page and API port")
    run.add_argument(
        "--bootstrap", action="append", metavar="HOST:PORT", help="a peer's mesh address (repeat)"
    )
    run.add_argument("--no-mdns", action="store_true", help="do not use mDNS discovery")
    run.set_defaults(handler=cmd_run)

    status = commands.add_parser("status", help="show a running node's status")
    _add_client(status)
    status.set_defaults(handler=cmd_status)

    account = commands.add_parser("account", help="accounts held by a running node")
    account.set_defaults(handler=lambda _args: _help(account))
    account_commands = account.add_subparsers(dest="account_command", metavar="ACTION")
    new = account_commands.add_parser("new", help="create and enrol an account")
    _add_client(new)
    new.add_argument("--name", help="display name")
    new.set_defaults(handler=cmd_account_new)
    listing = account_commands.add_parser("list", help="list enrolled accounts")
    _add_client(listing)
    listing.add_argument("--held", action="store_true", help="only accounts held by this node")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(handler=cmd_account_list)
    show = account_commands.add_parser("show", help="an account's balance and history")
    _add_client(show)
    show.add_argument("account", help="account id")
    show.set_defaults(handler=cmd_account_show)

    balance = commands.add_parser("balance", help="an account's balance")
    _add_client(balance)
    balance.add_argument("account", help="account id")
    balance.set_defaults(handler=cmd_balance)

    transfer = commands.add_parser("transfer", help="send an amount between accounts")
    _add_client(transfer)
    transfer.add_argument("sender", metavar="FROM", help="account id held by this node")
    transfer.add_argument("recipient", metavar="TO", help="recipient account id")
    transfer.add_argument("amount", help='amount such as "12.34"')
    transfer.add_argument("--memo", default="", help="free text (at most 140 bytes)")
    transfer.set_defaults(handler=cmd_transfer)

    post = commands.add_parser("post", help="broadcast a message")
    _add_client(post)
    post.add_argument("content", help="the message (at most 4 KiB)")
    post.add_argument("--channel", default="social", help="channel (default social)")
    post.add_argument("--priority", type=int, default=3, help="1 (low) to 5 (high)")
    post.set_defaults(handler=cmd_post)

    messages = commands.add_parser("messages", help="list messages")
    _add_client(messages)
    messages.add_argument("--channel", help="only this channel")
    messages.add_argument("--limit", type=int, default=50)
    messages.set_defaults(handler=cmd_messages)

    ledger = commands.add_parser("ledger", help="the ledger summary and state hash")
    _add_client(ledger)
    ledger.set_defaults(handler=cmd_ledger)

    send = commands.add_parser("send", help="send a direct message to one node, hop by hop")
    _add_client(send)
    send.add_argument("--to", required=True, metavar="NODE", help="destination node id")
    send.add_argument("content", help="the message (at most 4 KiB)")
    send.set_defaults(handler=cmd_send)

    route = commands.add_parser("route", help="the path (and alternates) to a node")
    _add_client(route)
    route.add_argument("node", help="destination node id")
    route.set_defaults(handler=cmd_route)

    routes = commands.add_parser("routes", help="the route table")
    _add_client(routes)
    routes.set_defaults(handler=cmd_routes)

    peers = commands.add_parser("peers", help="connected peers")
    _add_client(peers)
    peers.set_defaults(handler=cmd_peers)

    subscriptions = commands.add_parser("subscriptions", help="show or set channel subscriptions")
    _add_client(subscriptions)
    subscriptions.add_argument(
        "--set", nargs="*", metavar="CHANNEL", help="replace the subscriptions with these channels"
    )
    subscriptions.set_defaults(handler=cmd_subscriptions)

    topology = commands.add_parser("topology", help="nodes and links this node knows")
    _add_client(topology)
    topology.set_defaults(handler=cmd_topology)

    inbox = commands.add_parser("inbox", help="direct messages this node received")
    _add_client(inbox)
    inbox.set_defaults(handler=cmd_inbox)

    metrics = commands.add_parser("metrics", help="the node's Prometheus metrics")
    _add_client(metrics)
    metrics.set_defaults(handler=cmd_metrics)

    openapi = commands.add_parser("api", help="the API's endpoints (OpenAPI)")
    _add_client(openapi)
    openapi.set_defaults(handler=cmd_openapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        result: int = handler(args)
    except LiberationError as exc:
        print(f"liberation-node: {exc.detail}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_ERROR))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
