"""Power loss: acknowledged transfers survive a cut that drops every write not yet synced (issue 8).

The design promises that a transfer acknowledged with 201 survives kill -9 *and* power loss,
because ledger commits run with ``synchronous=FULL``. A kill -9 alone cannot show the second half:
the kernel keeps a dead process's writes. So the node runs with ``fsync_shim.c`` preloaded, which
keeps, for node.db and node.db-wal, the file as of its last fdatasync/fsync (``<file>.synced``).
After the kill the test "cuts the power": each tracked file is replaced by that durable image (or
removed if it was never synced) and the -shm index is deleted; the node restarts and every
acknowledged transfer so far must be in both accounts' histories (and in the durable database as
SQLite itself reads it), with the ledger conserved. Three cuts in a row, the last restart without
the shim; at the end every send must get claimed.

Kill points are seeded (``LIBERATION_POWER_LOSS_SEED``; printed): after the k-th 201, or inside
the k-th tracked sync, either before it reaches the disk or after its image is recorded but
before SQLite learns that it returned. The control test shows the check can fail: the shim stops
recording syncs mid-load (a disk that ignores flushes, as ``synchronous=OFF`` would give) and the
same check must then report acknowledged transfers as lost.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest

from tests.conftest import cli_command, node_env, wait_until
from tests.mesh.harness import STOP_BOUND_S, ProcessNode

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the fsync shim needs Linux (LD_PRELOAD)"),
]

SHIM_SOURCE = Path(__file__).with_name("fsync_shim.c")
#: The files whose durability the shim models; -shm is rebuilt from the WAL after a crash.
TRACKED = ("node.db", "node.db-wal")
SEED = int(os.environ.get("LIBERATION_POWER_LOSS_SEED", "20261126"))
#: An enrolled account's grants: housing + investment + one weekly flow, in cents.
GRANTS = 104_000_00 * 2 + 800_00
CLIENTS = 16
REQUESTS_PER_CYCLE = 300
#: Power cuts in the main test, one per kill mode (in a seeded order).
KILL_MODES = ("ack", "sync-before", "sync-after")
#: Account histories are read with limit=1000; the load stays well under it.
HISTORY_LIMIT = 1_000
PAGE = 4096


# --- the shim ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compile fsync_shim.c into a shared library (skip where no C toolchain is installed)."""
    compiler = next(
        (found for name in ("cc", "gcc", "clang") if (found := shutil.which(name))), None
    )
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang) to build the fsync shim for LD_PRELOAD")
    library = tmp_path_factory.mktemp("shim") / "fsync_shim.so"
    command = [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror"]
    result = subprocess.run(
        [*command, "-o", str(library), str(SHIM_SOURCE), "-ldl"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        if "No such file or directory" in result.stderr and "#include" in result.stderr:
            pytest.skip(f"the C compiler has no C library headers:\n{result.stderr[-1000:]}")
        pytest.fail(f"fsync_shim.c does not compile with {compiler}:\n{result.stderr}")
    return library


@dataclass
class ShimLog:
    """The shim's log lines for one process: "<pid> <event> key=value..."."""

    lines: list[list[str]]

    @classmethod
    def read(cls, path: Path, pid: int) -> ShimLog:
        text = path.read_text() if path.exists() else ""
        rows = [line.split() for line in text.splitlines()]
        return cls([row[1:] for row in rows if row and row[0] == str(pid)])

    def events(self, name: str) -> list[dict[str, str]]:
        return [
            dict(part.partition("=")[::2] for part in row[1:])
            for row in self.lines
            if row[0] == name
        ]

    def check_model_holds(self) -> None:
        """The process loaded the shim, synced through it, and used no call it does not model."""
        assert self.events("loaded"), "the shim was not loaded into the node (LD_PRELOAD ignored?)"
        assert any(e.get("file") == "node.db-wal" for e in self.events("sync")), (
            "the shim saw no sync of node.db-wal: SQLite made the WAL durable some other way, "
            "so the power-loss model does not apply"
        )
        odd = [" ".join(row) for row in self.lines if row[0] in ("unmodelled", "error")]
        assert not odd, f"the shim met calls its model does not cover, or failed: {odd[:5]}"


# --- one node process, with or without the shim --------------------------------------------------


class PowerNode(ProcessNode):
    """A founding node in its own process; its output goes to a file, not a pipe."""

    def __init__(self, root: Path, index: int) -> None:
        super().__init__(root, index, ledger={"genesis": "found", "period_s": 3600})
        self.control = root / "shim-control"
        self.control.mkdir(exist_ok=True)
        self.shim_log = self.control / "shim.log"
        self.starts = 0
        self.output: IO[str] | None = None
        self.output_path = self.data_dir / "node-0.out"

    def launch(self, shim: Path | None) -> None:
        """Start the node; with ``shim``, its syncs build the durable images."""
        env = {k: v for k, v in node_env().items() if not k.startswith("FSYNC_SHIM_")}
        env.pop("LD_PRELOAD", None)
        if shim is not None:
            mark_durable(self.data_dir)
            for name in ("freeze", "kill-at"):
                (self.control / name).unlink(missing_ok=True)
            env.update(
                LD_PRELOAD=str(shim),
                FSYNC_SHIM_LOG=str(self.shim_log),
                FSYNC_SHIM_CONTROL=str(self.control),
                FSYNC_SHIM_FILES=":".join(TRACKED),
            )
        self.close_output()
        self.starts += 1
        self.output_path = self.data_dir / f"node-{self.starts}.out"
        self.output = self.output_path.open("w")
        self.process = subprocess.Popen(
            cli_command("run", "--config", str(self.config_path)),
            stdout=self.output,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.output_path.read_text(errors="replace")[-chars:]

    def sigkill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)

    async def wait_dead(self) -> int:
        """The exit code, polled: a blocking wait would hold the test's event loop."""
        process = self.process
        assert process is not None
        await wait_until(
            lambda: process.poll() is not None, within=STOP_BOUND_S, what="the node to exit"
        )
        return process.returncode

    async def stop_cleanly(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = await self.wait_dead()
        assert code == 0, f"node exited with {code} on SIGTERM:\n{self.tail()}"
        self.close_output()

    def close_output(self) -> None:
        if self.output is not None:
            self.output.close()
            self.output = None

    def close(self) -> None:
        super().close()
        self.close_output()


class Api:
    def __init__(self, session: aiohttp.ClientSession, node: PowerNode) -> None:
        self.session = session
        self.node = node

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.node.status_port}"

    async def get(self, path: str) -> Any:
        async with self.session.get(self.base + path) as response:
            assert response.status == 200, f"GET {path}: {response.status} {await response.text()}"
            return await response.json()

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.session.post(self.base + path, json=body) as response:
            return response.status, await response.json()

    async def wait_ready(self, within: float = 30.0) -> None:
        node = self.node

        async def ready() -> bool:
            if not node.alive():
                raise AssertionError(f"the node exited while starting:\n{node.tail()}")
            try:
                status = await self.get("/api/status")
            except (aiohttp.ClientError, OSError):
                return False
            return bool(status.get("ready")) and bool(status.get("network_id"))

        await wait_until(ready, within=within, interval=0.05, what="the node to be ready")

    async def balance_cents(self, account: str) -> int:
        whole, _, frac = (await self.get(f"/api/accounts/{account}"))["balance"].partition(".")
        return int(whole) * 100 + int(frac)


# --- power cuts ----------------------------------------------------------------------------------


def image(path: Path) -> Path:
    return path.with_name(path.name + ".synced")


def mark_durable(data_dir: Path) -> None:
    """Whatever is on disk when a shimmed node starts counts as synced."""
    for name in TRACKED:
        live = data_dir / name
        if live.exists():
            shutil.copyfile(live, image(live))
        else:
            image(live).unlink(missing_ok=True)


def dropped_pages(live: Path, durable: Path) -> int:
    """4 KiB pages of ``live`` that the durable image does not hold as they are."""
    new = live.read_bytes() if live.exists() else b""
    old = durable.read_bytes() if durable.exists() else b""
    pages = (len(new) + PAGE - 1) // PAGE
    return sum(
        new[i * PAGE : (i + 1) * PAGE] != old[i * PAGE : (i + 1) * PAGE] for i in range(pages)
    )


def cut_power(data_dir: Path) -> str:
    """Leave the data directory as a power cut would: only what was synced survives."""
    assert not (data_dir / "node.db-journal").exists(), (
        "a rollback journal exists at the cut: the database left WAL mode, the model is not made "
        "for that"
    )
    summary = []
    for name in TRACKED:
        live = data_dir / name
        dropped = dropped_pages(live, image(live))
        size = live.stat().st_size if live.exists() else 0
        if image(live).exists():
            shutil.copyfile(image(live), live)
            summary.append(f"{name} {size}->{live.stat().st_size} B, {dropped} pages dropped")
        else:
            live.unlink(missing_ok=True)
            summary.append(f"{name} never synced: removed")
    (data_dir / "node.db-shm").unlink(missing_ok=True)
    for leftover in data_dir.glob("*.synced.tmp"):
        leftover.unlink()
    return "; ".join(summary)


def durable_sends(data_dir: Path, scratch: Path) -> set[str]:
    """Send ids in the durable database, read by SQLite directly from a copy (and its integrity)."""
    scratch.mkdir(parents=True, exist_ok=True)
    for name in TRACKED:
        if (data_dir / name).exists():
            shutil.copyfile(data_dir / name, scratch / name)
    with closing(sqlite3.connect(scratch / "node.db")) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
        assert integrity == [("ok",)], f"the database is corrupt after the power cut: {integrity}"
        rows = db.execute("SELECT id FROM events WHERE kind = 'send'").fetchall()
    return {bytes(row[0]).hex() for row in rows}


# --- load and checks -----------------------------------------------------------------------------


@dataclass
class Load:
    """One burst of transfers between two accounts, and what came back."""

    acked: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    sent: int = 0


async def transfers_until_dead(
    api: Api,
    pair: tuple[str, str],
    *,
    tag: str,
    on_ack: Any = None,
) -> Load:
    """Post up to REQUESTS_PER_CYCLE transfers from CLIENTS clients until the node dies."""
    node = api.node
    load = Load()
    queue = list(range(REQUESTS_PER_CYCLE))
    queue.reverse()

    async def client() -> None:
        while queue and node.alive():
            i = queue.pop()
            sender, recipient = pair if i % 2 else pair[::-1]
            body = {
                "from": sender,
                "to": recipient,
                "amount": f"{1 + i % 7}.{i % 100:02d}",
                "memo": f"{tag} #{i}",
            }
            load.sent += 1
            try:
                status, answer = await api.post("/api/transfers", body)
            except (TimeoutError, aiohttp.ClientError, ValueError):
                load.statuses["no answer"] += 1  # died under this request: never acknowledged
                continue
            load.statuses[str(status)] += 1
            if status == 201:
                load.acked.append(answer["id"])
                if on_ack is not None:
                    on_ack(load)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return load


async def stored_transfers(api: Api, accounts: tuple[str, ...]) -> set[str]:
    """Transfers the node shows: every 'out' send in every account's history."""
    stored: set[str] = set()
    for account in accounts:
        detail = await api.get(f"/api/accounts/{account}?limit={HISTORY_LIMIT}")
        history = detail["history"]
        assert len(history) < HISTORY_LIMIT, (
            f"{account[:12]}'s history reached the list limit: the check cannot see everything"
        )
        stored |= {row["send"] for row in history if row["direction"] == "out"}
    return stored


async def found_mesh(api: Api) -> tuple[str, str]:
    """Wait for the founding node, enrol two accounts; returns their ids once granted."""
    await api.wait_ready()
    accounts = []
    for name in ("alice", "bob"):
        status, created = await api.post("/api/accounts", {"name": name})
        assert status == 201, created
        accounts.append(created["account"])

    async def granted() -> bool:
        return all([await api.balance_cents(a) == GRANTS for a in accounts])

    await wait_until(granted, within=30, interval=0.05, what="the enrolment grants")
    return accounts[0], accounts[1]


def say(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n    [power] {text}", end="", flush=True)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[PowerNode]:
    power_node = PowerNode(tmp_path, 12)
    try:
        yield power_node
    finally:
        power_node.close()


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))


# --- the tests -----------------------------------------------------------------------------------


async def test_acknowledged_transfers_survive_power_loss(
    node: PowerNode, shim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    say(capsys, f"seed {SEED} (replay with LIBERATION_POWER_LOSS_SEED={SEED})")
    started = time.monotonic()
    phases: dict[str, float] = {}
    async with session() as http:
        api = Api(http, node)
        with timed(phases, "found"):
            node.launch(shim)
            pair = await found_mesh(api)
        acked_before: set[str] = set()
        for cycle, mode in enumerate(rng.sample(KILL_MODES, len(KILL_MODES)), start=1):
            pid = node.pid
            if mode == "ack":
                point = rng.randint(20, 250)

                def kill_at_point(load: Load, point: int = point) -> None:
                    if len(load.acked) == point:
                        node.sigkill()

                on_ack: Any = kill_at_point
                where = f"after the {point}th 201"
            else:
                point = rng.randint(5, 60)
                when = mode.removeprefix("sync-")
                (node.control / "kill-at.tmp").write_text(f"{point} {when}\n")
                (node.control / "kill-at.tmp").rename(node.control / "kill-at")
                on_ack = None
                where = f"in the {point}th tracked sync, {when} it is durable"
            with timed(phases, "load"):
                load = await transfers_until_dead(api, pair, tag=f"cycle {cycle}", on_ack=on_ack)
            reached = not node.alive()
            node.sigkill()  # the load ran out before the kill point: cut the power now
            code = await node.wait_dead()
            assert code == -signal.SIGKILL, (
                f"node exited with {code}, not by SIGKILL:\n{node.tail()}"
            )
            log = ShimLog.read(node.shim_log, pid)
            log.check_model_holds()
            if mode != "ack" and reached:
                assert log.events("kill"), (
                    f"the node died before the shim's kill point:\n{node.tail()}"
                )
            assert load.acked, f"cycle {cycle}: nothing was acknowledged before the kill ({mode})"
            cut = cut_power(node.data_dir)
            on_disk = durable_sends(node.data_dir, tmp_path / f"scratch{cycle}")
            last = cycle == len(KILL_MODES)
            with timed(phases, "restart"):
                # Power is back: the node restarts (with the shim again for the next cut; the
                # last restart is a plain one, so recovery owes nothing to the shim).
                node.launch(None if last else shim)
                await api.wait_ready()
            stored = await stored_transfers(api, pair)
            acked = acked_before | set(load.acked)
            missing = acked - stored
            say(
                capsys,
                f"cut {cycle} ({mode}) {where}{'' if reached else ' (not reached: after load)'}: "
                f"{len(load.acked)} acknowledged of {load.sent} sent {dict(load.statuses)}, "
                f"{len(stored)} stored, {len(missing)} lost; {cut}",
            )
            assert not missing, (
                f"power cut {cycle} ({mode}, {where}, seed {SEED}): {len(missing)} acknowledged "
                f"transfers are gone after restart, e.g. {sorted(missing)[:3]}; of these "
                f"{len(acked - on_disk)} are not in the durable database either"
            )
            assert not acked - on_disk, (
                f"{len(acked - on_disk)} acknowledged transfers are missing from the durable "
                "database as SQLite reads it, although the node shows them"
            )
            ledger = await api.get("/api/ledger")
            assert ledger["conserved"] is True, f"supply not conserved after cut {cycle}: {ledger}"
            acked_before = acked

        async def all_claimed() -> bool:
            ledger = await api.get("/api/ledger")
            balances = [await api.balance_cents(a) for a in pair]
            return ledger["unclaimed"] == "0.00" and sum(balances) == 2 * GRANTS

        with timed(phases, "claims"):
            await wait_until(all_claimed, within=30, interval=0.1, what="claims of all sends")
        with timed(phases, "stop"):
            await node.stop_cleanly()
    spent = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in phases.items())
    say(capsys, f"{len(acked_before)} acknowledged, 3 cuts in {elapsed(started)} ({spent})")


async def test_the_check_catches_transfers_lost_when_syncs_are_not_kept(
    node: PowerNode, shim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Control: if commits were not made durable (synchronous=OFF, a disk ignoring flushes), the
    same power cut and check report acknowledged transfers as lost - so the test above can fail."""
    rng = random.Random(SEED + 1)
    freeze_at = rng.randint(30, 120)
    kill_at = freeze_at + 60
    started = time.monotonic()
    async with session() as http:
        api = Api(http, node)
        node.launch(shim)
        pair = await found_mesh(api)
        pid = node.pid

        def freeze_then_kill(load: Load) -> None:
            if len(load.acked) == freeze_at:
                (node.control / "freeze").touch()
            elif len(load.acked) == kill_at:
                node.sigkill()

        load = await transfers_until_dead(api, pair, tag="control", on_ack=freeze_then_kill)
        node.sigkill()
        await node.wait_dead()
        assert len(load.acked) >= kill_at, f"the load ended early: {dict(load.statuses)}"
        log = ShimLog.read(node.shim_log, pid)
        log.check_model_holds()
        assert log.events("frozen"), "no sync happened after the freeze: the control shows nothing"
        cut = cut_power(node.data_dir)
        node.launch(None)
        await api.wait_ready()
        stored = await stored_transfers(api, pair)
        before, after = set(load.acked[:freeze_at]), set(load.acked[freeze_at:])
        missing = set(load.acked) - stored
        say(
            capsys,
            f"control (seed {SEED + 1}): flushes ignored after the {freeze_at}th 201, killed "
            f"after the {kill_at}th: {len(missing)} of {len(after)} later acknowledgements lost "
            f"({len(log.events('frozen'))} syncs not kept); {cut}; {elapsed(started)}",
        )
        assert before <= stored, (
            f"{len(before - stored)} transfers acknowledged before the freeze were lost: "
            "the shim's durable images are wrong"
        )
        assert missing, (
            "the check found no lost transfer although no commit after the freeze was kept: "
            "it could not catch a durability bug"
        )
        assert missing <= after
        ledger = await api.get("/api/ledger")
        assert ledger["conserved"] is True, f"supply not conserved: {ledger}"
        await node.stop_cleanly()


@contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.monotonic() - start


def elapsed(start: float) -> str:
    return f"{time.monotonic() - start:.1f}s"
