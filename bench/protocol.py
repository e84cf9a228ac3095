"""Protocol benchmark: events signed+encoded/s and decoded+verified/s beside bare Ed25519.

The ceilings are the bare library calls on the same bytes: cryptography's (OpenSSL's) Ed25519 sign
of the signed message, and libsodium's check of it (crypto_sign_open, which `identity.verify`
uses). OpenSSL's verify, with the public key already loaded, is printed beside them. Goal: our
decode+verify path at 0.7 of the verify ceiling or better (encoding and checks cost under 30% on top
of the maths).

Usage: python bench/protocol.py [--events N] [--runs R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# This file is named like the package it measures: keep bench/ off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402
from nacl.bindings import crypto_sign_open  # noqa: E402

from protocol.events import ZERO_ID, Event, Post, Send  # noqa: E402
from protocol.identity import DOMAIN_EVENT, SigningKey  # noqa: E402

NETWORK = bytes(range(32))


def make_bodies(count: int) -> list[Post | Send]:
    bodies: list[Post | Send] = []
    for i in range(count):
        if i % 2:
            bodies.append(Post("social", 1 + i % 5, f"message number {i} " + "x" * (i % 200)))
        else:
            bodies.append(Send(bytes([i % 256]) * 32, 100 + i, "transfer", f"memo {i}"))
    return bodies


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    key = SigningKey.for_label("bench")
    bodies = make_bodies(args.events)
    public = Ed25519PublicKey.from_public_bytes(key.public)

    sign_rates, sign_ceiling, verify_rates, verify_ceiling, openssl_verify = [], [], [], [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        events: list[Event] = []
        prev = ZERO_ID
        for seq, body in enumerate(bodies, start=1):
            event = Event.create(
                key, NETWORK, seq=seq, prev=prev, ts=1_767_225_600_000 + seq, body=body
            )
            prev = event.id
            events.append(event)
        sign_rates.append(rate(len(events), time.perf_counter() - start))

        messages = [DOMAIN_EVENT + NETWORK + event.signed_part() for event in events]
        start = time.perf_counter()
        for message in messages:
            key.sign(b"", message)
        sign_ceiling.append(rate(len(messages), time.perf_counter() - start))

        raws = [event.raw for event in events]
        start = time.perf_counter()
        for raw in raws:
            Event.decode(raw).check_signature(NETWORK)
        verify_rates.append(rate(len(raws), time.perf_counter() - start))

        sigs = [event.sig for event in events]
        start = time.perf_counter()
        for sig, message in zip(sigs, messages, strict=True):
            crypto_sign_open(sig + message, key.public)
        verify_ceiling.append(rate(len(messages), time.perf_counter() - start))

        start = time.perf_counter()
        for sig, message in zip(sigs, messages, strict=True):
            public.verify(sig, message)
        openssl_verify.append(rate(len(messages), time.perf_counter() - start))

    ours_sign, bare_sign = statistics.median(sign_rates), statistics.median(sign_ceiling)
    ours_verify, bare_verify = statistics.median(verify_rates), statistics.median(verify_ceiling)
    print(f"events: {args.events} per run, {args.runs} runs (medians)")
    print(
        f"signed+encoded   : {ours_sign:8.0f}/s   bare Ed25519 sign  : {bare_sign:8.0f}/s"
        f"   ratio {ours_sign / bare_sign:.2f}"
    )
    print(
        f"decoded+verified : {ours_verify:8.0f}/s   bare Ed25519 verify: {bare_verify:8.0f}/s"
        f"   ratio {ours_verify / bare_verify:.2f}  (goal >= 0.70)"
    )
    openssl = statistics.median(openssl_verify)
    speedup = bare_verify / openssl
    print(f"{'':32}OpenSSL verify     : {openssl:8.0f}/s   (libsodium {speedup:.2f}x as fast)")


if __name__ == "__main__":
    main()
