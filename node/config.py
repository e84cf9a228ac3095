"""Typed configuration: a tree of frozen dataclasses, loaded and validated in one place.

Sources, highest precedence first: CLI flags, ``LIBERATION_<SECTION>_<KEY>`` environment variables,
the TOML file, the defaults below. Every problem names its key and source and stops start-up with
`ConfigError` (exit code 2); nothing here uses ``assert`` on user input.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.errors import ConfigError
from protocol import limits
from protocol.events import valid_channel

ENV_PREFIX = "LIBERATION_"

Check = Callable[[Any], str | None]


def _setting(default: Any, check: Check | None = None) -> Any:
    return field(default=default, metadata={"check": check})


def _between(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        if not low <= value <= high:
            return f"must be between {low:g} and {high:g}, got {value!r}"
        return None

    return check


def _port(value: int) -> str | None:
    if not 0 <= value <= 65535:
        return f"must be a port number 0..65535 (0 picks a free port), got {value}"
    return None


def _loopback(value: str) -> str | None:
    if value == "localhost":
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return f"must be a loopback IP address (127.0.0.1 or ::1), got {value!r}"
    if not address.is_loopback:
        return (
            f"must be a loopback address: the control API signs with this node's keys, "
            f"got {value!r}"
        )
    return None


def _ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"must be an IP address, got {value!r}"
    return None


def _host_ports(values: tuple[str, ...]) -> str | None:
    for value in values:
        try:
            parse_host_port(value)
        except ValueError as exc:
            return str(exc)
    return None


def _ice_urls(values: tuple[str, ...]) -> str | None:
    for value in values:
        if not value.startswith(("stun:", "turn:", "turns:")):
            return f"ICE server URLs start with stun:, turn: or turns:, got {value!r}"
    return None


def _ip_list(values: tuple[str, ...]) -> str | None:
    for value in values:
        problem = _ip(value)
        if problem:
            return problem
    return None


def _node_ids(values: tuple[str, ...]) -> str | None:
    for value in values:
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            return f"node ids are 64 lowercase hex digits, got {value!r}"
    return None


def _log_level(value: str) -> str | None:
    if value not in {"debug", "info", "warning", "error"}:
        return f"must be one of debug, info, warning, error; got {value!r}"
    return None


def parse_host_port(text: str) -> tuple[str, int]:
    """Split "HOST:PORT" or "[V6]:PORT"; raises ValueError with a readable message."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"addresses are HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host, port


def default_data_dir(env: Mapping[str, str]) -> Path:
    """The XDG data directory for the daemon when no data_dir is configured."""
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local/share")
    return Path(base) / "liberation-node"


@dataclass(frozen=True, slots=True)
class NodeSection:
    #: Where the key, lock and database live. Relative paths are relative to the config file.
    data_dir: Path = _setting(Path())  # noqa: RUF009 - Path is immutable
    #: A name shown to peers and on the status page.
    name: str = _setting("", lambda v: "at most 64 bytes" if len(v.encode()) > 64 else None)
    log_level: str = _setting("info", _log_level)
    #: Test mode: debug endpoints (POST /api/debug/events). Never on a production node.
    test_mode: bool = _setting(False)
    #: Test mode: a file to which the node writes what it did with each event (JSON lines).
    history_file: Path = _setting(Path())  # noqa: RUF009 - Path is immutable


@dataclass(frozen=True, slots=True)
class MeshSection:
    #: Address of the signalling endpoint (POST /signal) on the mesh port.
    host: str = _setting("0.0.0.0", _ip)  # noqa: S104 - a mesh node listens on the LAN
    port: int = _setting(8471, _port)
    #: STUN/TURN URLs for Internet use; none on a LAN (aiortc's default STUN server is not used).
    ice_servers: tuple[str, ...] = _setting((), _ice_urls)
    ice_username: str = _setting("")
    ice_credential: str = _setting("")
    #: Peers this node tries to keep, and the most it accepts.
    target_peers: int = _setting(6, _between(1, 64))
    max_peers: int = _setting(12, _between(1, 256))
    #: When not empty, the only node ids this node connects to (forces a topology).
    allow_peers: tuple[str, ...] = _setting((), _node_ids)
    #: Keep-alive: seconds between pings, and of silence after which a peer is dropped.
    keepalive_s: float = _setting(limits.PING_INTERVAL_S, _between(0.1, 300))
    dead_after_s: float = _setting(limits.PEER_DEAD_S, _between(0.5, 3600))
    #: IP addresses WebRTC gathers host candidates on; empty for every address but 127.0.0.1.
    ice_addresses: tuple[str, ...] = _setting((), _ip_list)


@dataclass(frozen=True, slots=True)
class DiscoverySection:
    #: Advertise and browse _liberation._tcp.local. with mDNS.
    mdns: bool = _setting(True)
    #: Interface addresses for mDNS; empty means every interface.
    interfaces: tuple[str, ...] = _setting((), _ip_list)
    #: HOST:PORT of mesh ports to contact at start.
    bootstrap: tuple[str, ...] = _setting((), _host_ports)


@dataclass(frozen=True, slots=True)
class StatusSection:
    host: str = _setting("127.0.0.1", _loopback)
    port: int = _setting(8470, _port)


@dataclass(frozen=True, slots=True)
class LimitsSection:
    max_frame_bytes: int = _setting(limits.MAX_FRAME_BYTES, _between(1024, limits.MAX_FRAME_BYTES))
    peer_frames_per_s: float = _setting(limits.DEFAULT_PEER_FRAMES_PER_S, _between(1, 1e6))
    peer_frame_burst: int = _setting(limits.DEFAULT_PEER_FRAME_BURST, _between(1, 1e7))
    peer_bytes_per_s: int = _setting(limits.DEFAULT_PEER_BYTES_PER_S, _between(1024, 1e10))
    max_clock_skew_s: float = _setting(limits.DEFAULT_MAX_CLOCK_SKEW_S, _between(1, 86_400))
    max_connections_per_address: int = _setting(
        limits.MAX_CONNECTIONS_PER_ADDRESS, _between(1, 1024)
    )


def _genesis_mode(value: str) -> str | None:
    if value not in GENESIS_MODES:
        return f"must be one of {', '.join(GENESIS_MODES)}; got {value!r}"
    return None


def _channels(values: tuple[str, ...]) -> str | None:
    for value in values:
        if not valid_channel(value):
            return f"channel names use a-z, 0-9, '-' and '_' (at most 32 bytes), got {value!r}"
    return None


GENESIS_MODES = ("auto", "join", "found")


@dataclass(frozen=True, slots=True)
class LedgerSection:
    #: auto: adopt a peer's genesis, or found a new mesh when none appears within genesis_wait_s;
    #: join: only ever adopt a peer's; found: found a new mesh at once when this node has none.
    genesis: str = _setting("auto", _genesis_mode)
    genesis_wait_s: float = _setting(5.0, _between(0, 3600))
    #: Name of a mesh this node founds.
    mesh_name: str = _setting(
        "liberation mesh", lambda v: "at most 64 bytes" if len(v.encode()) > 64 else None
    )
    #: Distribution period of a mesh this node founds, in seconds (a week; down to 1 for tests).
    period_s: int = _setting(604_800, _between(1, 10 * 365 * 86_400))


@dataclass(frozen=True, slots=True)
class MessagesSection:
    #: Channels this node subscribes to: shown by default on the status page and `messages`.
    channels: tuple[str, ...] = _setting(("billboard", "social", "media", "direct"), _channels)


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeSection = field(default_factory=NodeSection)
    mesh: MeshSection = field(default_factory=MeshSection)
    discovery: DiscoverySection = field(default_factory=DiscoverySection)
    status: StatusSection = field(default_factory=StatusSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    ledger: LedgerSection = field(default_factory=LedgerSection)
    messages: MessagesSection = field(default_factory=MessagesSection)


def _section_types() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _coerce(value: Any, expected: Any, where: str) -> Any:
    """``value`` as ``expected`` (a field's type), or ConfigError naming ``where``."""
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if expected is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if expected is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise ConfigError(f"{where}: expected a path string, got {value!r}")
    if typing.get_origin(expected) is tuple:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    raise ConfigError(f"{where}: unsupported setting type")  # pragma: no cover - schema bug


def _from_env_text(text: str, expected: Any, where: str) -> Any:
    """Environment values are text; read them as the field's type."""
    if expected is bool:
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{where}: expected true or false, got {text!r}")
    if expected is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {text!r}") from None
    if expected is float:
        try:
            return _coerce(float(text), float, where)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {text!r}") from None
    if typing.get_origin(expected) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def _build_section(
    section_type: type[Any], values: dict[str, tuple[Any, str]], section: str
) -> Any:
    hints = typing.get_type_hints(section_type)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(section_type):
        if f.name not in values:
            continue
        raw, source = values[f.name]
        where = f"{source}: [{section}] {f.name}"
        value = _coerce(raw, hints[f.name], where)
        check: Check | None = f.metadata.get("check")
        if check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(f"{where} {problem}")
        kwargs[f.name] = value
    return section_type(**kwargs)


def load_config(
    path: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read, merge and validate the configuration; raises ConfigError naming the key."""
    env = os.environ if env is None else env
    sections = _section_types()
    merged: dict[str, dict[str, tuple[Any, str]]] = {name: {} for name in sections}
    base_dir = Path.cwd()

    if path is not None:
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc}") from None
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        base_dir = path.resolve().parent
        for section, table in document.items():
            if section not in sections:
                raise ConfigError(f"{path}: unknown section [{section}]")
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            known = {f.name for f in dataclasses.fields(sections[section])}
            for key, value in table.items():
                if key not in known:
                    raise ConfigError(f"{path}: [{section}] {key}: unknown key")
                merged[section][key] = (value, str(path))

    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections:
            continue  # LIBERATION_* variables that are not settings (e.g. test switches)
        hints = typing.get_type_hints(sections[section])
        if key not in hints:
            raise ConfigError(f"environment: {name}: unknown key [{section}] {key}")
        where = f"environment: {name}"
        merged[section][key] = (_from_env_text(value, hints[key], where), "environment")

    for section, table in (overrides or {}).items():
        for key, value in table.items():
            if value is not None:
                merged[section][key] = (value, "command line")

    built = {
        section: _build_section(section_type, merged[section], section)
        for section, section_type in sections.items()
    }
    config = Config(**built)
    problem = _cross_check(config)
    if problem:
        raise ConfigError(problem)
    history = config.node.history_file
    if str(history) not in {"", "."} and not history.is_absolute():
        history_source = merged["node"].get("history_file", (None, "default"))[1]
        history = (base_dir if history_source == str(path) else Path.cwd()) / history
        config = dataclasses.replace(
            config, node=dataclasses.replace(config.node, history_file=history)
        )
    data_dir = config.node.data_dir
    source = merged["node"].get("data_dir", (None, "default"))[1]
    if str(data_dir) in {"", "."} and source == "default":
        data_dir = default_data_dir(env)
    elif not data_dir.is_absolute():
        data_dir = (base_dir if source == str(path) else Path.cwd()) / data_dir
    return dataclasses.replace(config, node=dataclasses.replace(config.node, data_dir=data_dir))


def _cross_check(config: Config) -> str | None:
    if config.mesh.dead_after_s <= config.mesh.keepalive_s:
        return (
            f"[mesh] dead_after_s ({config.mesh.dead_after_s:g}) must exceed "
            f"[mesh] keepalive_s ({config.mesh.keepalive_s:g})"
        )
    if config.mesh.target_peers > config.mesh.max_peers:
        return (
            f"[mesh] target_peers ({config.mesh.target_peers}) must not exceed "
            f"[mesh] max_peers ({config.mesh.max_peers})"
        )
    return None


def describe(config: Config) -> dict[str, dict[str, Any]]:
    """The effective configuration as plain data (for `status --json` and the docs)."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        out[section.name] = {
            f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
