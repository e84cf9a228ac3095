"""mDNS discovery with python-zeroconf: advertise this node's mesh port and browse for others.

The service type is ``_liberation._tcp.local.``; the instance name holds a 16-hex-digit prefix of
the node id (labels are capped at 63 bytes) and the TXT record the whole id, the protocol version,
the network id and the mesh port. An mDNS record proves nothing: anyone may claim any node id.
The claim is only a hint - the signed answer and the HELLO prove who answers - and a record whose
claim turns out false is forgotten.

zeroconf binds its listening socket to 0.0.0.0:5353 whatever interfaces it is given; when the
configuration restricts interfaces, this module also turns off IP_MULTICAST_ALL on that socket so
that the node does not hear (or answer) mDNS from other interfaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.identity import KeyFormatError, parse_key_id
from protocol.limits import PROTOCOL_VERSION

log = logging.getLogger(__name__)

SERVICE_TYPE = "_liberation._tcp.local."
#: Linux socket option number (not exported by the socket module).
IP_MULTICAST_ALL = 49
#: Seconds allowed for resolving one discovered service.
RESOLVE_TIMEOUT_MS = 3_000


@dataclass(frozen=True, slots=True)
class MdnsPeer:
    """A node an mDNS record claims to be at an address (unverified until we connect)."""

    node_id: bytes
    addresses: tuple[str, ...]
    port: int
    network_id: bytes | None
    version: int


def instance_name(node_id: bytes) -> str:
    return f"ln-{node_id[:8].hex()}"


def parse_record(
    properties: dict[str, str | None], addresses: list[str], port: int
) -> MdnsPeer | None:
    """The peer a TXT record describes, or None when the record is not a valid one of ours."""
    try:
        node_id = parse_key_id(properties.get("node") or "")
    except KeyFormatError:
        return None
    network_text = properties.get("net") or ""
    network_id: bytes | None = None
    if network_text:
        try:
            network_id = parse_key_id(network_text)
        except KeyFormatError:
            return None
    version_text = properties.get("proto") or ""
    if not version_text.isdigit() or len(version_text) > 4:
        return None
    if not 1 <= port <= 65535 or not addresses:
        return None
    return MdnsPeer(node_id, tuple(addresses[:8]), port, network_id, int(version_text))


class MdnsDiscovery:
    """Advertises this node and reports the nodes it finds (as unverified `MdnsPeer` hints)."""

    def __init__(
        self,
        node_id: bytes,
        port: int,
        *,
        interfaces: tuple[str, ...],
        on_peer: Callable[[MdnsPeer], None],
        network_id: bytes | None = None,
    ) -> None:
        self.node_id = node_id
        self.port = port
        self.interfaces = interfaces
        self.on_peer = on_peer
        self.network_id = network_id
        self._zeroconf: Any = None
        self._browser: Any = None
        self._info: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        from zeroconf import IPVersion, ServiceStateChange
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

        kwargs: dict[str, Any] = {"ip_version": IPVersion.V4Only}
        if self.interfaces:
            kwargs["interfaces"] = list(self.interfaces)
        self._zeroconf = AsyncZeroconf(**kwargs)
        if self.interfaces:
            self._isolate_listen_socket()
        self._info = self._service_info()
        # Registration probes the name for about a second; do not hold start-up for it.
        registering = await self._zeroconf.async_register_service(
            self._info, allow_name_change=True
        )
        self._watch(registering, "registration")

        def on_change(
            zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
                if self._info is not None and name == self._info.name:
                    return
                task = asyncio.ensure_future(self._resolve(name))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        self._browser = AsyncServiceBrowser(
            self._zeroconf.zeroconf, [SERVICE_TYPE], handlers=[on_change]
        )

    def _watch(self, awaitable: Any, what: str) -> None:
        async def wait() -> None:
            try:
                await awaitable
            except Exception as exc:
                log.warning("mDNS %s failed: %s", what, exc)

        task = asyncio.ensure_future(wait())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _isolate_listen_socket(self) -> None:
        # zeroconf's shared listening socket is bound to 0.0.0.0:5353 (python-zeroconf#193): keep
        # it from receiving multicast joined by other sockets on other interfaces.
        engine = getattr(self._zeroconf.zeroconf, "engine", None)
        sock = getattr(engine, "_listen_socket", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)

    def _service_info(self) -> Any:
        from zeroconf.asyncio import AsyncServiceInfo

        name = instance_name(self.node_id)
        properties = {
            "node": self.node_id.hex(),
            "proto": str(PROTOCOL_VERSION),
            "net": self.network_id.hex() if self.network_id else "",
        }
        kwargs: dict[str, Any] = {}
        if self.interfaces:
            kwargs["parsed_addresses"] = list(self.interfaces)
        return AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=self.port,
            properties=properties,
            server=f"{name}.local.",
            **kwargs,
        )

    async def update_network(self, network_id: bytes) -> None:
        """Advertise the network id once this node has a genesis."""
        self.network_id = network_id
        if self._zeroconf is None or self._info is None:
            return
        old_name = self._info.name
        self._info = self._service_info()
        self._info.name = old_name
        with contextlib.suppress(Exception):
            self._watch(await self._zeroconf.async_update_service(self._info), "update")

    async def _resolve(self, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(SERVICE_TYPE, name)
        try:
            found = await info.async_request(self._zeroconf.zeroconf, RESOLVE_TIMEOUT_MS)
        except Exception as exc:  # a malformed record from the network
            log.debug("mDNS resolve of %s failed: %s", name, exc)
            return
        if not found:
            return
        try:
            properties = dict(info.decoded_properties)
            addresses = list(info.parsed_addresses())
        except Exception:  # undecodable TXT or addresses: not one of ours
            return
        peer = parse_record(properties, addresses, int(info.port or 0))
        if peer is None or peer.node_id == self.node_id:
            return
        self.on_peer(peer)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.async_cancel()
            self._browser = None
        if self._zeroconf is not None:
            if self._info is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        await self._zeroconf.async_unregister_service(self._info), 2.0
                    )
            with contextlib.suppress(Exception):
                await self._zeroconf.async_close()
            self._zeroconf = None
