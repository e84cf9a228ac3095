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
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node import __version__
from node.errors import ApiError, NotRunning
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
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1 (validated)
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_S) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
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
    from node.datadir import DataDir

    config = _load(args, {"node": {"data_dir": args.data_dir}})
    data_dir = DataDir(config.node.data_dir)
    data_dir.ensure()
    with data_dir.lock():
        key, created = data_dir.node_key(create=True)
    if args.json:
        _print_json({"node_id": key.id, "data_dir": str(data_dir.path), "created": created})
    else:
        verb = "created" if created else "already had"
        print(f"{key.id}")
        print(f"({verb} the node key in {data_dir.path})", file=sys.stdout)
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
    if ledger:
        lines.append(f"pool      {ledger.get('pool_balance')}")
        lines.append(f"accounts  {ledger.get('accounts')}")
        lines.append(f"state     {ledger.get('state_hash')}")
    print("\n".join(lines))
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------


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
