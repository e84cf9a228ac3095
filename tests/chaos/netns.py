"""The chaos topology: one network namespace per node, joined by veth pairs to a bridge.

Everything is made by this module under names that carry a random tag, and `Topology.destroy`
removes all of it (namespaces, which take their veth ends with them, then the bridges). The
bridge lives in the caller's own namespace (inside `tests/netns-run.sh` a private one), so no
packet can reach a real network.

Faults on links:
- partition: the host ends of some nodes' veths move to a second bridge, then back;
- netem loss and delay (`tc qdisc ... netem`) where the kernel has it;
- otherwise a throttle: a token bucket (`tbf`) of a low rate with a short queue on both ends of a
  node's veth, which delays packets (queueing) and drops what overflows.

`NetnsHttp` reaches each node's loopback-only API from this process: one worker thread per
namespace joins it with setns(2) (a network namespace is per thread), so sockets it opens live
there. Nothing else in this process changes namespace.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

SUBNET = "10.78.0"
PREFIX = 24
CLONE_NEWNET = 0x40000000
#: Seconds any `ip`/`tc` command may take.
COMMAND_TIMEOUT_S = 15.0

T = TypeVar("T")


class NetnsError(RuntimeError):
    pass


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(args), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def cannot_make_namespaces() -> str | None:
    """Why this machine cannot run a chaos run (None when it can)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs iproute2 (`{tool}`)"
    probe = f"lncp{uuid.uuid4().hex[:6]}"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    try:
        bridge = run("ip", "link", "add", f"{probe}b", "type", "bridge", check=False)
        if bridge.returncode != 0:
            return f"cannot create a bridge: {bridge.stderr.strip()}"
        run("ip", "link", "del", f"{probe}b", check=False)
    finally:
        run("ip", "netns", "del", probe, check=False)
    return None


def netem_available() -> tuple[bool, str]:
    """Whether `tc qdisc ... netem` works here, and the kernel's answer when it does not."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"lnq{tag}a", f"lnq{tag}b"
    made = run("ip", "link", "add", a, "type", "veth", "peer", "name", b, check=False)
    if made.returncode != 0:
        return False, f"cannot create a veth pair: {made.stderr.strip()}"
    try:
        result = run(
            "tc",
            "qdisc",
            "add",
            "dev",
            a,
            "root",
            "netem",
            "loss",
            "1%",
            "delay",
            "10ms",
            check=False,
        )
        if result.returncode == 0:
            return True, "netem available"
        return False, result.stderr.strip() or f"tc exit code {result.returncode}"
    finally:
        run("ip", "link", "del", a, check=False)


@dataclass
class Topology:
    """N namespaces on one bridge, 10.78.0.(i+1)/24 each; a second bridge for partitions."""

    size: int
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    made: list[tuple[str, str]] = field(default_factory=list)
    #: Nodes whose host end is on the partition bridge.
    partitioned: set[int] = field(default_factory=set)
    #: Nodes whose link has a loss/delay/throttle qdisc.
    shaped: set[int] = field(default_factory=set)

    @property
    def bridge(self) -> str:
        return f"lnb{self.tag}"

    @property
    def bridge2(self) -> str:
        return f"lnp{self.tag}"

    def namespace(self, index: int) -> str:
        return f"lnc{self.tag}n{index}"

    def host_end(self, index: int) -> str:
        return f"lnh{self.tag}{index}"

    def node_end(self, index: int) -> str:
        return f"lnv{self.tag}{index}"

    @staticmethod
    def address(index: int) -> str:
        return f"{SUBNET}.{index + 1}"

    def create(self) -> None:
        """Make the bridges, namespaces and veth pairs (call `destroy` even if this raises)."""
        for bridge in (self.bridge, self.bridge2):
            run("ip", "link", "add", bridge, "type", "bridge")
            self.made.append(("link", bridge))
            # Link-local multicast (mDNS) is flooded anyway; no snooping, no STP delays.
            run(
                "ip",
                "link",
                "set",
                bridge,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
                "stp_state",
                "0",
            )
            run("ip", "link", "set", bridge, "up")
        for index in range(self.size):
            ns = self.namespace(index)
            run("ip", "netns", "add", ns)
            self.made.append(("netns", ns))
            host, inner = self.host_end(index), self.node_end(index)
            run("ip", "link", "add", host, "type", "veth", "peer", "name", inner)
            self.made.append(("link", host))
            run("ip", "link", "set", inner, "netns", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.address(index)}/{PREFIX}", "dev", inner)
            run("ip", "-n", ns, "link", "set", inner, "up", "multicast", "on")
            run("ip", "link", "set", host, "master", self.bridge)
            run("ip", "link", "set", host, "up")

    def destroy(self) -> list[str]:
        """Remove everything made, newest first; returns the problems (nothing raises)."""
        problems: list[str] = []
        for kind, name in reversed(self.made):
            if kind == "netns":
                result = run("ip", "netns", "del", name, check=False)
            else:
                result = run("ip", "link", "del", name, check=False)
            # A veth goes with its namespace; "Cannot find device" is then expected.
            if result.returncode != 0 and "Cannot find device" not in result.stderr:
                problems.append(f"{kind} {name}: {result.stderr.strip()}")
        self.made.clear()
        return problems

    def leftovers(self) -> list[str]:
        """Names with this run's tag still present (empty after a clean `destroy`)."""
        links = run("ip", "-o", "link", "show", check=False).stdout
        spaces = run("ip", "netns", "list", check=False).stdout
        found = [line.split(":")[1].strip() for line in links.splitlines() if self.tag in line]
        found += [line.split()[0] for line in spaces.splitlines() if self.tag in line]
        return found

    # --- link faults -----------------------------------------------------------------------------

    def partition(self, group: set[int]) -> None:
        """Put ``group`` on the second bridge: it and the rest no longer hear each other."""
        for index in sorted(group):
            run("ip", "link", "set", self.host_end(index), "master", self.bridge2)
            self.partitioned.add(index)

    def heal_partition(self) -> None:
        for index in sorted(self.partitioned):
            run("ip", "link", "set", self.host_end(index), "master", self.bridge)
        self.partitioned.clear()

    def netem(self, index: int, loss_percent: float, delay_ms: int) -> None:
        spec = ["netem", "loss", f"{loss_percent:g}%", "delay", f"{delay_ms}ms"]
        self._shape(index, spec)

    def throttle(self, index: int, rate_kbit: int, latency_ms: int) -> None:
        spec = ["tbf", "rate", f"{rate_kbit}kbit", "burst", "4kb", "latency", f"{latency_ms}ms"]
        self._shape(index, spec)

    def _shape(self, index: int, spec: list[str]) -> None:
        ns = self.namespace(index)
        run("tc", "qdisc", "replace", "dev", self.host_end(index), "root", *spec)
        self.shaped.add(index)
        run(
            "ip",
            "netns",
            "exec",
            ns,
            "tc",
            "qdisc",
            "replace",
            "dev",
            self.node_end(index),
            "root",
            *spec,
        )

    def unshape(self, index: int) -> None:
        if index not in self.shaped:
            return
        run("tc", "qdisc", "del", "dev", self.host_end(index), "root", check=False)
        run(
            "ip",
            "netns",
            "exec",
            self.namespace(index),
            "tc",
            "qdisc",
            "del",
            "dev",
            self.node_end(index),
            "root",
            check=False,
        )
        self.shaped.discard(index)

    def heal_all(self) -> None:
        for index in sorted(self.shaped):
            self.unshape(index)
        if self.partitioned:
            self.heal_partition()


# --- HTTP into the namespaces ---------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _enter(namespace: str) -> None:
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class HttpError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class NetnsHttp:
    """Requests to 127.0.0.1:PORT inside a namespace, from a worker thread that lives there."""

    def __init__(self, namespace: str, port: int) -> None:
        self.namespace = namespace
        self.port = port
        self._pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"ns-{namespace}",
            initializer=_enter,
            initargs=(namespace,),
        )

    def _call(self, fn: Callable[[], T], timeout: float) -> T:
        return self._pool.submit(fn).result(timeout=timeout + 5)

    def request(
        self, method: str, path: str, body: Any = None, *, timeout: float = 5.0, raw: bool = False
    ) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}

        def call() -> Any:
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                    payload = response.read()
            except urllib.error.HTTPError as exc:
                text = exc.read()
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = text.decode("utf-8", "replace")
                raise HttpError(exc.code, parsed) from None
            return payload.decode("utf-8", "replace") if raw else json.loads(payload)

        return self._call(call, timeout)

    def get(self, path: str, timeout: float = 5.0) -> Any:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: Any, timeout: float = 10.0) -> Any:
        return self.request("POST", path, body, timeout=timeout)

    def metrics(self, timeout: float = 5.0) -> dict[str, float]:
        """The /metrics samples by name (with labels), as `liberation-node metrics --json`."""
        text = self.request("GET", "/metrics", timeout=timeout, raw=True)
        samples: dict[str, float] = {}
        for line in str(text).splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    samples[name] = float(value)
                except ValueError:
                    continue
        return samples

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
