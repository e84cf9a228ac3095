"""The load on one node: run inside the node's namespace, talks to its API on 127.0.0.1.

    ip netns exec NS python tests/chaos/load.py --port 8470 --seed S --out load.jsonl

Enrols ``--accounts`` accounts on the node, then until SIGTERM: transfers between the accounts
it holds and accounts of other nodes (``GET /api/accounts`` lists every enrolled one), and posts
on channels, at ``--rate`` operations per second on average. Every 2xx is written as one JSON
line (``{"t", "what": "ack", "kind", "id", ...}``) as soon as it arrives; errors are counted by
code and written in the final ``stop`` line. The node may be killed, paused or cut off at any
time: the load keeps going and never retries an operation (a retry would be a new event).

Standard library only, so that it starts fast and adds little to the machine's load.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

CHANNELS = ("billboard", "social", "media", "direct")
#: Accounts with this name prefix are never paid (the double spender).
EXCLUDED_PREFIX = "chaos-mallory"
ACCOUNTS_REFRESH_S = 5.0


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.base = f"http://127.0.0.1:{args.port}"
        self.rng = random.Random(args.seed)
        self.rate = args.rate
        self.count = args.accounts
        self.name = args.name
        self.timeout = args.timeout
        self.out = open(args.out, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self.stop = threading.Event()
        self.mine: list[str] = []
        self.others: list[str] = []
        self.errors: Counter[str] = Counter()
        self.acks = 0
        self._refreshed = 0.0

    def write(self, what: str, **fields: Any) -> None:
        entry = {"t": round(time.time(), 6), "what": what, **fields}
        self.out.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.base + path,
            data=data,
            headers={"Content-Type": "application/json"} if data else {},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read())
            except ValueError:
                payload = {}
            return exc.code, payload
        except (OSError, ValueError) as exc:  # refused, reset, timed out: the node is faulted
            return 0, {"error": type(exc).__name__}

    def count_error(self, status: int, payload: Any) -> None:
        code = payload.get("error") if isinstance(payload, dict) else None
        self.errors[f"{status}:{code}"] += 1

    def pause(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def enrol(self) -> None:
        while len(self.mine) < self.count and not self.stop.is_set():
            status, body = self.call(
                "POST", "/api/accounts", {"name": f"{self.name}-{len(self.mine)}"}
            )
            if status == 201:
                self.mine.append(body["account"])
                self.acks += 1
                self.write("ack", kind="enroll", id=body["event"], account=body["account"])
            else:
                self.count_error(status, body)
                self.pause(0.5)

    def refresh(self) -> None:
        status, body = self.call("GET", "/api/accounts?limit=1000")
        if status != 200:
            self.count_error(status, body)
            return
        self._refreshed = time.monotonic()
        self.others = [
            a["id"]
            for a in body["accounts"]
            if a["id"] not in self.mine
            and a["frozen_at"] is None
            and not str(a["name"]).startswith(EXCLUDED_PREFIX)
        ]

    def transfer(self) -> None:
        sender = self.rng.choice(self.mine)
        own = [a for a in self.mine if a != sender]
        pool = self.others if self.others and (not own or self.rng.random() < 0.8) else own
        if not pool:
            return
        recipient = self.rng.choice(pool)
        amount = f"{self.rng.randint(1, 300)}.{self.rng.randint(0, 99):02d}"
        status, body = self.call(
            "POST",
            "/api/transfers",
            {"from": sender, "to": recipient, "amount": amount, "memo": "chaos"},
        )
        if status == 201:
            self.acks += 1
            self.write("ack", kind="send", id=body["id"], account=sender, to=recipient)
        else:
            self.count_error(status, body)

    def post(self) -> None:
        channel = self.rng.choice(CHANNELS)
        content = f"{self.name} says {self.rng.getrandbits(48):012x}"
        body = {"content": content, "channel": channel, "priority": self.rng.randint(1, 5)}
        status, reply = self.call("POST", "/api/messages", body)
        if status == 201:
            self.acks += 1
            self.write("ack", kind="post", id=reply["id"])
        else:
            self.count_error(status, reply)

    def run(self) -> None:
        self.write("start", name=self.name)
        self.enrol()
        if self.mine:
            self.write("enrolled", accounts=self.mine)
        while not self.stop.is_set():
            if time.monotonic() - self._refreshed > ACCOUNTS_REFRESH_S:
                self.refresh()
            if self.rng.random() < 0.6:
                self.transfer()
            else:
                self.post()
            # Pacing of the load (exponential gaps), not synchronisation.
            self.pause(self.rng.expovariate(self.rate))
        self.write("stop", acks=self.acks, errors=dict(self.errors))
        self.out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8470)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--accounts", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1.0, help="operations per second")
    parser.add_argument("--name", default="load")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    load = Load(parser.parse_args(argv))
    signal.signal(signal.SIGTERM, lambda *_: load.stop.set())
    signal.signal(signal.SIGINT, lambda *_: load.stop.set())
    load.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
