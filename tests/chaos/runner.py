"""The chaos runner: N node processes in network namespaces, load, a seeded fault schedule.

Phases (each wait has a deadline; the fault schedule is the only thing timed by the clock):

1. topology: a bridge and one namespace per node (`netns.Topology`), 10.78.0.(i+1)/24;
2. nodes: ``liberation-node run`` in each namespace (``ip netns exec``), test mode with a history
   file, mDNS on the namespace address plus two bootstrap addresses, fast keep-alive; node 0
   founds the mesh with a short distribution period, the others join. Then the double-spending
   account ("chaos-mallory") is enrolled on the node the schedule names;
3. load: one `load.py` per node, inside its namespace;
4. faults: the schedule of `faults.make_schedule` (kill -9 and restart, SIGSTOP/SIGCONT,
   partitions, netem or a throttle, and the double spend during a partition of its own);
5. quiet: once every fault is healed, wait until the mesh is connected again, then keep the load
   going ``quiet_s`` seconds (the liveness window);
6. stop the load, wait until every node has the same events and ledger state hash, SIGTERM every
   node and record the exit codes.

Everything the checker needs goes to ``manifest.json`` in the work directory (written even when
the run fails half-way); the stores and histories stay in ``node<i>/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protocol.events import Event, Send
from protocol.identity import SigningKey
from tests.chaos import faults
from tests.chaos.faults import Fault, Shape
from tests.chaos.netns import HttpError, NetnsHttp, Topology, netem_available
from tests.mesh.harness import toml_document

REPO = Path(__file__).resolve().parents[2]
LOAD_SCRIPT = Path(__file__).resolve().with_name("load.py")
STATUS_PORT = 8470
MESH_PORT = 8471
MALLORY = "chaos-mallory"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class RunError(RuntimeError):
    """The run could not be carried out (the mesh did not form, a node would not start...)."""


@dataclass
class RunConfig:
    seed: int
    workdir: Path
    nodes: int = 8
    #: Seconds of the fault phase, and between the starts of two faults.
    duration_s: float = 60.0
    fault_every_s: float = 8.0
    #: Seconds the load goes on once the mesh is connected again after the last fault.
    quiet_s: float = 12.0
    #: Load operations per second per node, and accounts each load enrols.
    rate: float = 1.0
    accounts: int = 2
    #: Distribution period of the mesh (seconds): weekly payments happen during the run.
    period_s: int = 20
    keepalive_s: float = 0.5
    dead_after_s: float = 2.5
    target_peers: int = 3
    max_peers: int = 8
    sample_every_s: float = 2.0
    #: Deadlines.
    start_within_s: float = 60.0
    form_within_s: float = 90.0
    reconnect_within_s: float = 60.0
    converge_within_s: float = 60.0
    stop_within_s: float = 15.0
    double_spend: bool = True
    #: A final agreement is trusted at least `settle_s` after a distribution period starts and
    #: `period_margin_s` before the next one.
    settle_s: float = 3.0
    period_margin_s: float = 4.0
    log: Callable[[str], None] = print

    def shape(self, netem: bool) -> Shape:
        return Shape(self.nodes, self.duration_s, self.fault_every_s, netem, self.double_spend)


def node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBERATION_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO)
    # A node that does not stop in time gets SIGABRT: faulthandler then writes every thread's
    # stack to its log, the evidence of where it hung.
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a node's SQLite store (the node may be running)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    db.execute("PRAGMA query_only = 1")
    return db


def events_digest(path: Path) -> tuple[int, str]:
    """(count, SHA-256 of the sorted ids) of a store's events table."""
    db = read_only(path)
    try:
        ids = sorted(bytes(row[0]) for row in db.execute("SELECT id FROM events"))
    finally:
        db.close()
    return len(ids), hashlib.sha256(b"".join(ids)).hexdigest()


class ChaosNode:
    """One node process in its namespace, restartable with the same data directory."""

    def __init__(self, index: int, topology: Topology, root: Path, cfg: RunConfig) -> None:
        self.index = index
        self.namespace = topology.namespace(index)
        self.address = topology.address(index)
        self.dir = root / f"node{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.history = self.dir / "history.jsonl"
        self.load_out = self.dir / "load.jsonl"
        self.log_path = self.dir / "node.log"
        self.database = self.dir / "data" / "node.db"
        self.keys = self.dir / "data" / "keys"
        self.process: subprocess.Popen[bytes] | None = None
        self.instances: list[dict[str, Any]] = []
        self.paused = False
        self.down = False  # killed on purpose, not restarted yet
        self.term_sent = False
        self.node_id = ""
        self.http = NetnsHttp(self.namespace, STATUS_PORT)
        others = [i for i in (0, index - 1, index + 1) if i != index and 0 <= i < cfg.nodes]
        config: dict[str, dict[str, Any]] = {
            "node": {
                "data_dir": str(self.dir / "data"),
                "name": f"chaos{index}",
                "log_level": "info",
                "test_mode": True,
                "history_file": str(self.history),
            },
            "mesh": {
                "host": self.address,
                "port": MESH_PORT,
                "keepalive_s": cfg.keepalive_s,
                "dead_after_s": cfg.dead_after_s,
                "target_peers": cfg.target_peers,
                "max_peers": cfg.max_peers,
                "ice_addresses": [self.address],
            },
            "discovery": {
                "mdns": True,
                "interfaces": [self.address],
                "bootstrap": [f"{topology.address(i)}:{MESH_PORT}" for i in others[:2]],
            },
            "status": {"port": STATUS_PORT},
            "ledger": {
                "genesis": "found" if index == 0 else "join",
                "period_s": cfg.period_s,
                "mesh_name": "chaos mesh",
            },
        }
        self.config_path = self.dir / "config.toml"
        self.config_path.write_text(toml_document(config))

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.namespace,
                    sys.executable,
                    "-m",
                    "tests.chaos.nodeproc",
                    "run",
                    "--config",
                    str(self.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=node_env(),
                cwd=REPO,
            )
        self.down = False
        self.paused = False
        self.term_sent = False
        self.instances.append({"pid": self.process.pid, "started": time.time()})

    def _ended(self, how: str, code: int | None) -> None:
        if self.instances and "ended" not in self.instances[-1]:
            self.instances[-1].update(ended=time.time(), how=how, exit_code=code)

    def kill9(self) -> None:
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self._ended("kill9", self.process.returncode)
        self.down = True
        self.paused = False

    def pause(self) -> None:
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def send_term(self) -> None:
        """One SIGTERM (a second one during shutdown would kill the process outright)."""
        if self.process is not None and self.alive() and not self.term_sent:
            self.resume()
            self.process.send_signal(signal.SIGTERM)
            self.term_sent = True

    def terminate(self, within: float) -> int | None:
        """SIGTERM and wait; the exit code, or None when it had to be killed."""
        if self.process is None:
            return None
        self.send_term()
        try:
            code = self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.diagnose()
            self._ended("sigterm-timeout", None)
            return None
        self._ended("sigterm", code)
        return code

    def diagnose(self) -> None:
        """A node that hangs: its asyncio tasks (SIGUSR1), its threads (SIGABRT), then kill."""
        assert self.process is not None
        for signum, grace in ((signal.SIGUSR1, 2.0), (signal.SIGABRT, 5.0), (signal.SIGKILL, 10.0)):
            if self.process.poll() is not None:
                return
            self.process.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "namespace": self.namespace,
            "address": self.address,
            "node_id": self.node_id,
            "dir": str(self.dir),
            "database": str(self.database),
            "history": str(self.history),
            "load_out": str(self.load_out),
            "log": str(self.log_path),
            "instances": self.instances,
        }


class Sampler(threading.Thread):
    """RSS and open fds from /proc, pending and inbox gauges from /metrics, every few seconds."""

    def __init__(self, nodes: list[ChaosNode], every_s: float, path: Path) -> None:
        super().__init__(name="chaos-sampler", daemon=True)
        self.nodes = nodes
        self.every_s = every_s
        self.path = path
        self.halt = threading.Event()
        self.errors = 0

    def run(self) -> None:
        with open(self.path, "a", buffering=1, encoding="utf-8") as out:
            while not self.halt.wait(self.every_s):
                for node in self.nodes:
                    sample = self.sample(node)
                    if sample is not None:
                        out.write(json.dumps(sample, separators=(",", ":")) + "\n")

    def sample(self, node: ChaosNode) -> dict[str, Any] | None:
        pid = node.pid
        if pid is None or not node.alive():
            return None
        sample: dict[str, Any] = {"t": round(time.time(), 3), "node": node.index, "pid": pid}
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    sample["rss_kb"] = int(line.split()[1])
            sample["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            sample["cpu_s"] = round((int(fields[11]) + int(fields[12])) / CLOCK_TICKS, 2)
            sample["load1"] = float(Path("/proc/loadavg").read_text().split()[0])
        except (OSError, ValueError):
            return None
        if node.paused or node.down:
            sample["paused"] = True
            return sample
        try:
            metrics = node.http.metrics(timeout=2.0)
        except Exception:
            self.errors += 1
            return sample
        sample["pending"] = metrics.get("liberation_pending_events")
        sample["inbox"] = metrics.get("liberation_inbox_events")
        sample["peers"] = metrics.get("liberation_peers")
        return sample


@dataclass
class Timeline:
    start: float = 0.0
    formed: float | None = None
    load_started: float | None = None
    faults_start: float | None = None
    last_heal: float | None = None
    connected: float | None = None
    load_stopped: float | None = None
    converged: float | None = None
    stopped: float | None = None


@dataclass
class Outcome:
    manifest: Path
    failure: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class ChaosRun:
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.root = cfg.workdir
        self.root.mkdir(parents=True, exist_ok=True)
        self.topology = Topology(cfg.nodes)
        self.nodes: list[ChaosNode] = []
        self.loads: list[subprocess.Popen[bytes]] = []
        self.sampler: Sampler | None = None
        self.timeline = Timeline(start=time.time())
        self.netem, self.netem_reason = False, ""
        self.schedule: list[Fault] = []
        self.fault_log: list[dict[str, Any]] = []
        self.crashes: list[dict[str, Any]] = []
        self.double_spend: dict[str, Any] | None = None
        self.mallory = ""
        self.mallory_holder = 0
        self.network_id = ""
        self.genesis_ts_ms = 0
        self.exit_codes: dict[int, int | None] = {}
        self.load_exit_codes: dict[int, int | None] = {}
        self.convergence: dict[str, Any] = {}
        self.cleanup_problems: list[str] = []
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    def log(self, text: str) -> None:
        self.cfg.log(f"[chaos {time.monotonic() - self._t0:7.1f}s] {text}")

    # --- the whole run ---------------------------------------------------------------------------

    def run(self) -> Outcome:
        failure: str | None = None
        try:
            self._run()
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
            self.log(f"run failed: {failure}")
        finally:
            self._cleanup()
        manifest = self.write_manifest(failure)
        return Outcome(manifest, failure, json.loads(manifest.read_text()))

    def plan(self) -> list[Fault]:
        self.netem, self.netem_reason = netem_available()
        self.schedule = faults.make_schedule(self.cfg.seed, self.cfg.shape(self.netem))
        self.mallory_holder = faults.mallory_holder(self.schedule, self.cfg.seed, self.cfg.nodes)
        return self.schedule

    def _run(self) -> None:
        cfg = self.cfg
        self.plan()
        self.log(
            f"seed {cfg.seed}: {cfg.nodes} nodes, faults every {cfg.fault_every_s:g}s "
            f"for {cfg.duration_s:g}s (schedule {faults.fingerprint(self.schedule)})"
        )
        if not self.netem:
            self.log(
                f"netem is not available ({self.netem_reason}): loss/delay faults are "
                "replaced by a tbf throttle"
            )
        for fault in self.schedule:
            self.log(f"  fault {fault.describe()}")
        self.topology.create()
        self.log(
            f"topology {self.topology.tag}: bridge {self.topology.bridge}, {cfg.nodes} namespaces"
        )
        self.nodes = [ChaosNode(i, self.topology, self.root, cfg) for i in range(cfg.nodes)]
        self.nodes[0].start()
        self.wait_for(lambda: self._status(0).get("network_id"), cfg.form_within_s, "the genesis")
        for node in self.nodes[1:]:
            node.start()
        self.form_mesh()
        self.sampler = Sampler(self.nodes, cfg.sample_every_s, self.root / "samples.jsonl")
        self.sampler.start()
        self.enrol_mallory()
        self.start_load()
        self.run_faults()
        self.quiet()
        self.stop_load()
        self.converge()
        self.stop_nodes()

    # --- waiting ---------------------------------------------------------------------------------

    def wait_for(self, condition: Callable[[], Any], within: float, what: str) -> Any:
        deadline = time.monotonic() + within
        last: Exception | None = None
        while True:
            self.check_crashes()
            try:
                result = condition()
                if result:
                    return result
            except Exception as exc:  # a node that is not answering yet
                last = exc
            if time.monotonic() >= deadline:
                raise RunError(f"timed out after {within:g}s waiting for {what} (last: {last})")
            self._halt.wait(0.25)

    def _status(self, index: int) -> dict[str, Any]:
        return dict(self.nodes[index].http.get("/api/status", timeout=3.0))

    def check_crashes(self) -> None:
        """A node that exited without being told to is a finding; restart it to go on."""
        for node in self.nodes:
            if node.process is None or node.down or node.alive():
                continue
            code = node.process.returncode
            node._ended("crashed", code)
            crash = {
                "node": node.index,
                "t": time.time(),
                "exit_code": code,
                "log_tail": node.log_tail(),
            }
            self.crashes.append(crash)
            self.log(f"node {node.index} exited by itself (code {code}); restarting it")
            node.start()

    # --- set-up ----------------------------------------------------------------------------------

    def form_mesh(self) -> None:
        def formed() -> bool:
            statuses = [self._status(n.index) for n in self.nodes]
            for node, status in zip(self.nodes, statuses, strict=True):
                node.node_id = status["node_id"]
            networks = {s.get("network_id") for s in statuses}
            return len(networks) == 1 and None not in networks and self.connected()

        self.wait_for(formed, self.cfg.form_within_s, "every node in one connected mesh")
        self.timeline.formed = time.time()
        ledger = self.nodes[0].http.get("/api/ledger")
        self.network_id = ledger["network_id"]
        self.genesis_ts_ms = int(ledger["genesis"]["ts"])
        self.log(
            f"mesh formed in {self.timeline.formed - self.timeline.start:.1f}s "
            f"(network {self.network_id[:16]})"
        )

    def connected(self) -> bool:
        """Every node has a peer and the graph of active sessions is connected."""
        ids = {n.node_id: n.index for n in self.nodes}
        edges: dict[int, set[int]] = {n.index: set() for n in self.nodes}
        for node in self.nodes:
            peers = node.http.get("/api/peers", timeout=3.0)["peers"]
            for peer in peers:
                other = ids.get(peer["id"])
                if other is not None:
                    edges[node.index].add(other)
                    edges[other].add(node.index)
        seen, todo = {0}, [0]
        while todo:
            for other in edges[todo.pop()]:
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        return len(seen) == len(self.nodes)

    def enrol_mallory(self) -> None:
        holder = self.nodes[self.mallory_holder]
        created = holder.http.post("/api/accounts", {"name": MALLORY})
        self.mallory = created["account"]
        self.log(f"double spender {self.mallory[:16]} enrolled on node {holder.index}")

    def start_load(self) -> None:
        for node in self.nodes:
            command = [
                "ip",
                "netns",
                "exec",
                node.namespace,
                sys.executable,
                str(LOAD_SCRIPT),
                "--port",
                str(STATUS_PORT),
                "--seed",
                str(self.cfg.seed * 1000 + node.index),
                "--out",
                str(node.load_out),
                "--accounts",
                str(self.cfg.accounts),
                "--rate",
                str(self.cfg.rate),
                "--name",
                f"load{node.index}",
            ]
            with open(node.dir / "load.log", "ab") as log:
                self.loads.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
                )
        self.wait_for(
            lambda: all(len(self.load_accounts(n.index)) >= self.cfg.accounts for n in self.nodes),
            self.cfg.form_within_s,
            "every load to enrol its accounts",
        )
        self.timeline.load_started = time.time()
        self.log(
            f"load running: {self.cfg.nodes} x {self.cfg.accounts} accounts, "
            f"{self.cfg.rate:g} op/s per node"
        )

    def load_accounts(self, index: int) -> list[str]:
        accounts: list[str] = []
        with contextlib.suppress(OSError):
            for line in self.nodes[index].load_out.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("kind") == "enroll":
                        accounts.append(entry["account"])
        return accounts

    # --- faults ----------------------------------------------------------------------------------

    def run_faults(self) -> None:
        steps: list[tuple[float, int, str, Fault]] = []
        for fault in self.schedule:
            steps.append((fault.start, 0, "begin", fault))
            steps.append((fault.end, 2, "heal", fault))
            if fault.kind == faults.DOUBLE_SPEND:
                steps.append((fault.start + fault.duration / 2, 1, "inject", fault))
        steps.sort(key=lambda s: (s[0], s[1]))
        start = time.monotonic()
        self.timeline.faults_start = time.time()
        for at, _, what, fault in steps:
            while (left := start + at - time.monotonic()) > 0:
                self.check_crashes()
                self._halt.wait(min(0.25, left))  # the schedule's own timing
            self.check_crashes()
            began = time.time()
            detail = self.apply(what, fault)
            entry = {
                "t": began,
                "at_s": round(time.monotonic() - start, 3),
                "step": what,
                "fault": fault.number,
                "kind": fault.kind,
                "detail": detail,
            }
            self.fault_log.append(entry)
            self.log(f"{what:<6} {fault.describe()}{' - ' + detail if detail else ''}")
            if what == "heal":
                self.timeline.last_heal = time.time()

    def apply(self, what: str, fault: Fault) -> str:
        node = self.nodes[fault.nodes[0]]
        kind = fault.kind
        if what == "inject":
            return self.inject_double_spend(fault)
        if kind == faults.KILL:
            if what == "begin":
                node.kill9()
            else:
                node.start()
        elif kind == faults.PAUSE:
            if what == "begin":
                node.pause()
            else:
                node.resume()
        elif kind in (faults.PARTITION, faults.DOUBLE_SPEND):
            if what == "begin":
                self.topology.partition(set(fault.nodes))
            else:
                self.topology.heal_partition()
        elif kind == faults.NETEM:
            if what == "begin":
                self.topology.netem(node.index, fault.params[0], int(fault.params[1]))
            else:
                self.topology.unshape(node.index)
        elif kind == faults.THROTTLE:
            if what == "begin":
                self.topology.throttle(node.index, int(fault.params[0]), int(fault.params[1]))
            else:
                self.topology.unshape(node.index)
        return ""

    def inject_double_spend(self, fault: Fault) -> str:
        """Sign two sends for mallory's next seq; one half to a node on each side."""
        holder, side_a, side_b = (self.nodes[i] for i in fault.targets)
        key_path = holder.keys / f"{self.mallory}.key"
        key = SigningKey.from_pem(key_path.read_bytes())
        author = bytes.fromhex(self.mallory)
        db = read_only(holder.database)
        try:
            head = db.execute(
                "SELECT seq, id, ts FROM events WHERE author = ? ORDER BY seq DESC LIMIT 1",
                (author,),
            ).fetchone()
            network = db.execute("SELECT value FROM meta WHERE key = 'network_id'").fetchone()
            face = db.execute("SELECT face FROM balances WHERE account = ?", (author,)).fetchone()
        finally:
            db.close()
        if head is None or network is None or face is None or int(face[0]) <= 0:
            raise RunError(f"the double spender has no head or balance on node {holder.index}")
        seq, prev, ts = int(head[0]), bytes(head[1]), int(head[2])
        recipients = []
        for target in (side_a, side_b):
            accounts = self.load_accounts(target.index)
            recipients.append(bytes.fromhex(accounts[0]) if accounts else bytes(32))
        amount = int(face[0])
        now_ms = max(int(time.time() * 1000), ts)
        halves = [
            Event.create(
                key,
                bytes(network[0]),
                seq=seq + 1,
                prev=prev,
                ts=now_ms,
                body=Send(recipients[i], amount, "transfer", f"double spend half {i}"),
            )
            for i in range(2)
        ]
        answers = []
        for target, half in zip((side_a, side_b), halves, strict=True):
            try:
                answers.append(target.http.post("/api/debug/events", {"events": [half.raw.hex()]}))
            except HttpError as exc:
                answers.append({"status": exc.status, "body": exc.body})
        self.double_spend = {
            "t": time.time(),
            "author": self.mallory,
            "seq": seq + 1,
            "amount": amount,
            "ids": [h.id.hex() for h in halves],
            "targets": [side_a.index, side_b.index],
            "recipients": [r.hex() for r in recipients],
            "holder": holder.index,
            "answers": answers,
        }
        return (
            f"seq {seq + 1}, {amount / 100:.2f} twice: {halves[0].id.hex()[:12]} -> node "
            f"{side_a.index}, {halves[1].id.hex()[:12]} -> node {side_b.index}"
        )

    # --- the end ---------------------------------------------------------------------------------

    def quiet(self) -> None:
        self.wait_for(self.connected, self.cfg.reconnect_within_s, "the mesh to reconnect")
        self.timeline.connected = time.time()
        since = self.timeline.connected - (self.timeline.last_heal or self.timeline.connected)
        self.log(
            f"mesh connected {since:.1f}s after the last heal; load goes on {self.cfg.quiet_s:g}s"
        )
        end = time.monotonic() + self.cfg.quiet_s
        while (left := end - time.monotonic()) > 0:
            self.check_crashes()
            self._halt.wait(min(0.5, left))

    def stop_load(self) -> None:
        for process in self.loads:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for index, process in enumerate(self.loads):
            try:
                self.load_exit_codes[index] = process.wait(timeout=self.cfg.stop_within_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                self.load_exit_codes[index] = None
        self.timeline.load_stopped = time.time()
        self.log("load stopped")

    def converge(self) -> None:
        """Wait until every node holds the same events and ledger state.

        The pool pays every account at each period boundary, which moves the target for a
        moment; so the agreement that ends the run is two equal observations in a row, both
        at least `settle_s` after a boundary and `period_margin_s` before the next. The figure
        is the first moment of that streak of agreement; the cut-off for the checker is the
        start of the first of the two observations (what was signed before it is everywhere).
        """
        period_ms = self.cfg.period_s * 1000
        streak: dict[str, Any] = {}

        def agreed() -> bool:
            began = time.time()
            statuses = [self._status(n.index) for n in self.nodes]
            seen = [
                {
                    "node": n.index,
                    "events": s["events"],
                    "state_hash": s["ledger"].get("state_hash"),
                    "digest": events_digest(n.database),
                }
                for n, s in zip(self.nodes, statuses, strict=True)
            ]
            self.convergence["last_seen"] = seen
            hashes = {s["state_hash"] for s in seen}
            digests = {tuple(s["digest"]) for s in seen}
            if len(digests) == 1:
                # The stores agree (whatever the nodes report): a figure of its own.
                self.convergence.setdefault("events_agreed_at", began)
            else:
                self.convergence.pop("events_agreed_at", None)
            if len({s["events"] for s in seen}) != 1 or len(hashes) != 1 or len(digests) != 1:
                streak.clear()
                return False
            digest = digests.pop()
            if streak.get("digest") != digest:
                streak.clear()
                streak.update(digest=digest, first=began)
            since = (began * 1000 - self.genesis_ts_ms) % period_ms
            safe = (
                since >= self.cfg.settle_s * 1000
                and period_ms - since >= self.cfg.period_margin_s * 1000
            )
            if not safe:
                streak.pop("safe_at", None)
                return False
            if "safe_at" in streak:
                streak.update(hash=hashes.pop(), count=digest[0])
                return True
            streak["safe_at"] = began
            return False

        stopped_at = self.timeline.load_stopped or time.time()
        try:
            self.wait_for(agreed, self.cfg.converge_within_s, "every node to agree")
        except RunError as exc:
            self.convergence.update(
                agreed=False, bound_s=self.cfg.converge_within_s, error=str(exc)
            )
            raise
        finally:
            agreed_at = self.convergence.get("events_agreed_at")
            if agreed_at is not None:
                self.convergence["events_after_load_stop_s"] = round(agreed_at - stopped_at, 3)
        self.timeline.converged = float(streak["safe_at"])
        stopped = self.timeline.load_stopped or self.timeline.converged
        first = float(streak["first"])
        self.convergence |= {
            "agreed": True,
            "bound_s": self.cfg.converge_within_s,
            "after_load_stop_s": round(max(0.0, first - stopped), 3),
            "after_last_heal_s": round(first - (self.timeline.last_heal or stopped), 3),
            "events": streak.get("count"),
            "state_hash": streak.get("hash"),
        }
        self.log(
            f"converged {self.convergence['after_load_stop_s']:.1f}s after the load stopped: "
            f"{streak.get('count')} events, state hash {str(streak.get('hash'))[:16]}"
        )

    def stop_nodes(self) -> None:
        if self.sampler is not None:
            self.sampler.halt.set()
        for node in self.nodes:
            node.send_term()
        for node in self.nodes:
            self.exit_codes[node.index] = node.terminate(self.cfg.stop_within_s)
        self.timeline.stopped = time.time()
        self.log(f"nodes stopped, exit codes {list(self.exit_codes.values())}")

    def _cleanup(self) -> None:
        self._halt.set()
        if self.sampler is not None:
            self.sampler.halt.set()
            self.sampler.join(timeout=15)
        for process in self.loads:
            if process.poll() is None:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
        for node in self.nodes:
            if node.alive():
                code = node.terminate(self.cfg.stop_within_s)
                self.exit_codes.setdefault(node.index, code)
        for node in self.nodes:
            node.http.close()
        with contextlib.suppress(Exception):
            self.topology.heal_all()
        self.cleanup_problems = self.topology.destroy()
        self.cleanup_problems += [f"left over: {name}" for name in self.topology.leftovers()]
        if self.cleanup_problems:
            self.log(f"cleanup problems: {self.cleanup_problems}")

    def write_manifest(self, failure: str | None) -> Path:
        cfg = self.cfg
        data = {
            "seed": cfg.seed,
            "failure": failure,
            "shape": asdict(cfg.shape(self.netem)),
            "schedule": faults.to_json(self.schedule),
            "schedule_fingerprint": faults.fingerprint(self.schedule) if self.schedule else None,
            "netem": self.netem,
            "netem_reason": self.netem_reason,
            "config": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in asdict(cfg).items()
                if k != "log"
            },
            "topology": {"tag": self.topology.tag, "bridge": self.topology.bridge},
            "network_id": self.network_id,
            "genesis_ts_ms": self.genesis_ts_ms,
            "nodes": [n.describe() for n in self.nodes],
            "samples": str(self.root / "samples.jsonl"),
            "sampler_errors": self.sampler.errors if self.sampler else 0,
            "mallory": self.mallory,
            "mallory_holder": self.mallory_holder,
            "double_spend": self.double_spend,
            "timeline": asdict(self.timeline),
            "fault_log": self.fault_log,
            "crashes": self.crashes,
            "convergence": self.convergence,
            "exit_codes": {str(k): v for k, v in self.exit_codes.items()},
            "load_exit_codes": {str(k): v for k, v in self.load_exit_codes.items()},
            "cleanup_problems": self.cleanup_problems,
            "replay": f"bench/chaos.py --seed {cfg.seed} --nodes {cfg.nodes} "
            f"--minutes {cfg.duration_s / 60:g} --fault-every {cfg.fault_every_s:g}",
        }
        path = self.root / "manifest.json"
        path.write_text(json.dumps(data, indent=1, default=str))
        return path


def new_seed() -> int:
    return random.SystemRandom().randrange(1, 1 << 31)
