"""A small typed interface over aiortc: one RTCPeerConnection with one mesh data channel.

Facts this relies on (aiortc 1.16 / aioice 0.13, read from their sources and measured):
- ``RTCConfiguration()`` without ``iceServers`` uses Google's STUN server; we always pass a list.
- ``setLocalDescription`` gathers every candidate before it returns (no trickle), so the SDP to
  send is ``pc.localDescription``, not what ``createOffer`` returned.
- aioice never gathers 127.0.0.1; a host with no other address cannot connect. Gathering can be
  pinned to chosen addresses (``[mesh] ice_addresses``) by replacing aioice's address lookup.
- An exception escaping a synchronous message handler closes the peer connection, so the handler
  here catches everything and an ``error`` listener is registered.
- Each connection gets a fresh certificate; its fingerprint is what HELLO binds to the node key.
- A dead peer is noticed by ICE consent only after about 30 s and an unreachable one after about
  60 s: the session's keep-alive and the connect timeout here are what the mesh relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp

log = logging.getLogger(__name__)

CHANNEL_LABEL = "liberation"
#: Both ends create the channel themselves (negotiated, id 0): no DCEP round trip.
CHANNEL_ID = 0
#: Seconds from offer to an open channel before the attempt is abandoned.
CONNECT_TIMEOUT_S = 15.0
#: Messages kept while no handler is attached yet (a HELLO and a few more at most).
MAX_EARLY_MESSAGES = 64
#: Seconds a close waits for an interrupted ICE connect to return (see _stop_late_consent_checks).
CONSENT_RACE_WAIT_S = 2.0


def pin_ice_addresses(addresses: Sequence[str]) -> None:
    """Gather host candidates only on ``addresses`` (process-wide; empty restores the default).

    aioice has no option for this; its gatherer looks the function up at call time.
    """
    import aioice.ice

    original = getattr(aioice.ice, "_liberation_original_get_host_addresses", None)
    if original is None:
        original = aioice.ice.get_host_addresses
        aioice.ice._liberation_original_get_host_addresses = original  # type: ignore[attr-defined]
    if not addresses:
        aioice.ice.get_host_addresses = original
        return
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


def ice_configuration(urls: Sequence[str], username: str, credential: str) -> RTCConfiguration:
    servers = [
        RTCIceServer(urls=url, username=username or None, credential=credential or None)
        for url in urls
    ]
    return RTCConfiguration(iceServers=servers)


def _fingerprint(fingerprints: Sequence[Any]) -> str:
    for fingerprint in fingerprints:
        if fingerprint.algorithm == "sha-256":
            return f"sha-256 {fingerprint.value.upper()}"
    raise ValueError("no sha-256 DTLS fingerprint")


class RtcPeer:
    """One WebRTC connection carrying the mesh's data channel."""

    def __init__(self, configuration: RTCConfiguration) -> None:
        self.pc = RTCPeerConnection(configuration)
        self.channel: RTCDataChannel = self.pc.createDataChannel(
            CHANNEL_LABEL, negotiated=True, id=CHANNEL_ID, ordered=True
        )
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self._on_message: Callable[[bytes], None] | None = None
        #: Messages that arrived before a handler was set (the peer's HELLO often does: it
        #: is sent the moment the channel opens, before our side has attached the session).
        self._early: list[bytes] = []
        self.on_close: Callable[[], None] = lambda: None
        self.remote_fingerprint = ""
        self._close_task: asyncio.Task[None] | None = None
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self._message)
        self.channel.on("close", self._closed)
        self.channel.on("error", self._error)
        self.pc.on("connectionstatechange", self._state_changed)

    @property
    def local_fingerprint(self) -> str:
        sctp = self.pc.sctp
        assert sctp is not None  # created with the data channel
        return _fingerprint(sctp.transport.getLocalParameters().fingerprints)

    def set_message_handler(self, handler: Callable[[bytes], None]) -> None:
        """Deliver messages to ``handler``, starting with any that arrived before it was set."""
        self._on_message = handler
        early, self._early = self._early, []
        for data in early:
            self._deliver(data)

    def _message(self, data: object) -> None:
        if not isinstance(data, bytes):
            data = str(data).encode("utf-8", "replace")  # a text message: the decoder refuses it
        if self._on_message is None:
            if len(self._early) < MAX_EARLY_MESSAGES:
                self._early.append(data)
            return
        self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        assert self._on_message is not None
        try:
            self._on_message(data)
        except Exception:  # never let an exception reach aiortc: it would close the connection
            log.exception("handling a data-channel message failed")

    def _error(self, error: object) -> None:
        log.debug("data channel error: %s", error)

    def _state_changed(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._closed()

    def _closed(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.on_close()
        except Exception:
            log.exception("close handler failed")
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close())

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self._local_sdp()

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        self.remote_fingerprint = _remote_fingerprint(offer_sdp)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self._local_sdp()

    async def accept(self, answer_sdp: str) -> None:
        self.remote_fingerprint = _remote_fingerprint(answer_sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    def _local_sdp(self) -> str:
        description = self.pc.localDescription
        assert description is not None
        return str(description.sdp)

    def send(self, data: bytes) -> None:
        if self.channel.readyState == "open":
            self.channel.send(data)

    @property
    def buffered(self) -> int:
        return int(self.channel.bufferedAmount)

    async def close(self) -> None:
        """Close the connection; every caller waits for the same close, and cancelling a caller
        never interrupts it (an interrupted close would leave aioice's tasks running)."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()
        await _stop_late_consent_checks(self.pc)
        if not self.closed.is_set():
            self.closed.set()
            with contextlib.suppress(Exception):
                self.on_close()


async def _stop_late_consent_checks(pc: RTCPeerConnection) -> None:
    """Cancel an ICE consent task that started after the close.

    aioice's ``connect()`` may already hold ICE_COMPLETED when ``close()`` runs; it then resumes
    after the close and starts its consent loop on a connection with no pairs left, which loops
    forever. Once the ICE transport's ``start()`` has returned, that task exists and is cancelled.
    """
    try:
        ice = pc.sctp.transport.transport  # type: ignore[union-attr]
        connection = ice._connection
    except AttributeError:
        return
    started = getattr(ice, "_RTCIceTransport__start", None)
    if isinstance(started, asyncio.Event):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.wait(), timeout=CONSENT_RACE_WAIT_S)
    task = getattr(connection, "_query_consent_task", None)
    if isinstance(task, asyncio.Task) and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _remote_fingerprint(sdp: str) -> str:
    """The sha-256 DTLS fingerprint an SDP announces (ValueError when it has none)."""
    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises many kinds on hostile input
        raise ValueError(f"unparseable SDP: {exc}") from None
    for media in description.media:
        if media.dtls is not None and media.dtls.fingerprints:
            return _fingerprint(media.dtls.fingerprints)
    raise ValueError("the SDP announces no DTLS fingerprint")
