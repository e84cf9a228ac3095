from __future__ import annotations

from pathlib import Path

import pytest

from node.config import Config, default_data_dir, describe, load_config, parse_host_port
from node.errors import ConfigError
from tests.conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_repo_default_config_loads_and_is_complete() -> None:
    config = load_config(REPO / "liberation_node.toml", env={})
    assert config.mesh.port == 8471
    assert config.status.port == 8470
    assert config.status.host == "127.0.0.1"
    assert config.node.data_dir == REPO / "data"
    # Every setting the daemon knows is written (and so documented) in the default file.
    text = (REPO / "liberation_node.toml").read_text()
    for section, values in describe(Config()).items():
        assert f"[{section}]" in text
        for key in values:
            assert f"\n{key} = " in text, f"[{section}] {key} missing from liberation_node.toml"


def test_defaults_without_file_use_xdg_data_dir(tmp_path: Path) -> None:
    config = load_config(None, env={"XDG_DATA_HOME": str(tmp_path)})
    assert config.node.data_dir == tmp_path / "liberation-node"
    assert default_data_dir({"HOME": "/home/x"}) == Path("/home/x/.local/share/liberation-node")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mesh]\nprot = 1\n", "[mesh] prot: unknown key"),
        ("[meshes]\nport = 1\n", "unknown section [meshes]"),
        ('[mesh]\nport = "8471"\n', "[mesh] port: expected an integer"),
        ("[mesh]\nport = 70000\n", "[mesh] port must be a port number"),
        ("[mesh]\nport = true\n", "[mesh] port: expected an integer"),
        ("[discovery]\nmdns = 1\n", "[discovery] mdns: expected true or false"),
        ('[discovery]\nbootstrap = "a:1"\n', "[discovery] bootstrap: expected a list of strings"),
        ('[discovery]\nbootstrap = ["nohost"]\n', "bootstrap addresses are HOST:PORT"),
        ('[discovery]\nbootstrap = ["h:0"]\n', "port out of range"),
        ('[status]\nhost = "0.0.0.0"\n', "[status] host must be a loopback address"),
        ('[status]\nhost = "not an ip"\n', "[status] host must be a loopback IP address"),
        ("[limits]\nmax_frame_bytes = 100\n", "[limits] max_frame_bytes must be between"),
        ('[limits]\npeer_frames_per_s = "fast"\n', "[limits] peer_frames_per_s: expected a number"),
        ("[mesh]\ntarget_peers = 20\nmax_peers = 10\n", "target_peers (20) must not exceed"),
        ('[mesh]\nice_servers = ["http://x"]\n', "[mesh] ice_servers ICE server URLs start with"),
        ('[mesh]\nallow_peers = ["abc"]\n', "[mesh] allow_peers node ids are 64"),
        ('[node]\nlog_level = "loud"\n', "[node] log_level must be one of"),
        ("mesh = 3\n", "[mesh] must be a table"),
        ("[mesh\n", "not valid TOML"),
    ],
)
def test_file_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert expected in info.value.detail
    assert "\n" not in info.value.detail


def test_missing_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "dir.toml", env={})
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(binary, env={})


def test_precedence_cli_over_env_over_file_over_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[mesh]\nport = 1001\ntarget_peers = 3\n[status]\nport = 2001\n")
    env = {"LIBERATION_MESH_PORT": "1002", "LIBERATION_STATUS_PORT": "2002"}
    config = load_config(path, env=env, overrides={"mesh": {"port": 1003}})
    assert config.mesh.port == 1003  # CLI
    assert config.status.port == 2002  # environment
    assert config.mesh.target_peers == 3  # file
    assert config.mesh.max_peers == 12  # default


def test_environment_values_are_typed(tmp_path: Path) -> None:
    env = {
        "LIBERATION_DISCOVERY_MDNS": "off",
        "LIBERATION_DISCOVERY_BOOTSTRAP": "10.0.0.1:8471, 10.0.0.2:8471",
        "LIBERATION_LIMITS_MAX_CLOCK_SKEW_S": "60",
        "LIBERATION_CONFIG": "ignored: not a setting",
    }
    config = load_config(None, env=env)
    assert config.discovery.mdns is False
    assert config.discovery.bootstrap == ("10.0.0.1:8471", "10.0.0.2:8471")
    assert config.limits.max_clock_skew_s == 60.0


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("LIBERATION_MESH_PORT", "x", "LIBERATION_MESH_PORT: expected an integer"),
        ("LIBERATION_MESH_PROT", "1", "unknown key [mesh] prot"),
        ("LIBERATION_DISCOVERY_MDNS", "perhaps", "expected true or false"),
        ("LIBERATION_LIMITS_MAX_CLOCK_SKEW_S", "nan", "expected a finite number"),
        ("LIBERATION_STATUS_PORT", "99999", "environment: [status] port must be a port"),
    ],
)
def test_environment_errors_name_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={name: value})
    assert expected in info.value.detail


def test_relative_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\ndata_dir = "state"\n')
    assert load_config(path, env={}).node.data_dir == tmp_path / "state"


def test_cli_values_are_validated_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"command line: \[mesh\] port"):
        load_config(None, env={}, overrides={"mesh": {"port": -1}})


def test_parse_host_port() -> None:
    assert parse_host_port("127.0.0.1:8471") == ("127.0.0.1", 8471)
    assert parse_host_port("[::1]:8471") == ("::1", 8471)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_host_port(":80")
