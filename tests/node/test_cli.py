"""The CLI as a user runs it: subprocesses, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_command, free_port, node_env

TIMEOUT = 30


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args), capture_output=True, text=True, timeout=TIMEOUT, env=env or node_env()
    )


def wait_healthy(port: int, process: subprocess.Popen[str], timeout: float = TIMEOUT) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"node exited early: {process.communicate()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.02)
    raise AssertionError("node did not become healthy")


def start_node(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    status_port = free_port()
    process = subprocess.Popen(
        cli_command(
            "run",
            "--data-dir",
            str(data_dir),
            "--status-port",
            str(status_port),
            "--mesh-port",
            str(free_port()),
            "--no-mdns",
            *extra,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=node_env(LIBERATION_MESH_HOST="127.0.0.1"),
    )
    wait_healthy(status_port, process)
    return process, status_port


def test_version_and_help() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("liberation-node ")
    for command in ([], ["init"], ["run"], ["status"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, command
        assert "usage: liberation-node" in result.stdout


def test_init_prints_the_node_id(tmp_path: Path) -> None:
    result = run_cli("init", "--data-dir", str(tmp_path / "d"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert len(info["node_id"]) == 64
    assert info["created"]
    again = run_cli("init", "--data-dir", str(tmp_path / "d"))
    assert again.stdout.splitlines()[0] == info["node_id"]


def test_run_status_sigterm_exits_cleanly(tmp_path: Path) -> None:
    process, status_port = start_node(tmp_path / "d")
    try:
        status = run_cli("status", "--status-port", str(status_port), "--json")
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["events"] == 0
        assert info["peers"] == 0
        human = run_cli("status", "--status-port", str(status_port))
        assert human.returncode == 0
        assert info["node_id"] in human.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0
    assert err == ""
    assert "node stopped" in out


def test_sigint_also_exits_cleanly(tmp_path: Path) -> None:
    process, _ = start_node(tmp_path / "d")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0
    assert err == ""


def test_second_process_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    process, _ = start_node(tmp_path / "d")
    try:
        second = run_cli(
            "run",
            "--data-dir",
            str(tmp_path / "d"),
            "--status-port",
            str(free_port()),
            "--mesh-port",
            str(free_port()),
            "--no-mdns",
        )
        assert second.returncode == 2
        assert "in use by another liberation-node" in second.stderr
        assert "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=TIMEOUT)


def test_config_error_is_one_line_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[mesh]\nport = 'eighty'\n")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"liberation-node: {config}: [mesh] port: expected an integer, got 'eighty'"
    )


def test_bad_environment_value_is_one_line_with_exit_2(tmp_path: Path) -> None:
    result = run_cli("run", "--data-dir", str(tmp_path), env=node_env(LIBERATION_STATUS_PORT="x"))
    assert result.returncode == 2
    assert "LIBERATION_STATUS_PORT: expected an integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_insecure_key_stops_start_up(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert run_cli("init", "--data-dir", str(data)).returncode == 0
    os.chmod(data / "node.key", 0o644)
    result = run_cli("run", "--data-dir", str(data), "--no-mdns", "--status-port", "0")
    assert result.returncode == 2
    assert "accessible by other users" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_a_node_is_a_clear_error() -> None:
    result = run_cli("status", "--status-port", str(free_port()))
    assert result.returncode == 3
    assert "no liberation-node is answering on 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "run", "--data-dir", str(tmp_path / "d"), "--status-port", str(port), "--no-mdns"
        )
    assert result.returncode == 1
    assert f"cannot listen on status port 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["bogus", ""])
def test_usage_errors(command: str) -> None:
    result = run_cli(*([command] if command else []))
    assert result.returncode == 2


def test_repo_config_file_is_accepted_by_run_help() -> None:
    # `make run` uses the repo's file; a broken default would stop every new user.
    result = run_cli(
        "status", "--config", str(REPO / "liberation_node.toml"), "--status-port", str(free_port())
    )
    assert result.returncode == 3


def test_mesh_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            cli_command(
                "run",
                "--data-dir",
                str(tmp_path / "d"),
                "--status-port",
                str(free_port()),
                "--mesh-port",
                str(port),
                "--no-mdns",
            ),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=node_env(LIBERATION_MESH_HOST="127.0.0.1"),
        )
    assert result.returncode == 1
    assert f"cannot listen on mesh port 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
