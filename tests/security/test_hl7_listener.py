"""The HL7 MLLP listener under attack (issue 9 item 4): slow connections, a connection flood, and running out of
file descriptors. The listener is the real ``MllpServer``; the handler answers AA with ``edge_ingest.hl7.ack``, so
these tests exercise the listener and nothing behind it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from edge_ingest.hl7 import ack
from edge_ingest.mllp import FrameReader, MllpServer, frame

MESSAGE = "MSH|^~\\&|RIS|HOSPITAL|RADPULSE|EDGE|20240301101500||ADT^A01|CTRL1|P|2.5.1\rPID|1||MRN1\r"


def ack_all(text: str) -> str:
    return ack(text, "AA")


def exchange(port: int, source: str = "127.0.0.1", timeout_s: float = 10.0) -> str:
    """One message on a fresh connection; returns MSA-1 of the answer."""
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout_s)
        sock.connect(("127.0.0.1", port))
        sock.sendall(frame(MESSAGE))
        reader = FrameReader()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed without an answer")
            for item in reader.feed(chunk):
                msa = next(seg for seg in item.data.decode().split("\r") if seg.startswith("MSA"))
                return msa.split("|")[1]


def open_many(port: int, n: int, source: str) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        socks.append(sock)
    return socks


def mllp_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("mllp-") and t.name != "mllp-accept")


@pytest.fixture
def server() -> Iterator[MllpServer]:
    srv = MllpServer("127.0.0.1", 0, ack_all, max_connections=64, max_connections_per_peer=1000,
                     read_timeout_s=2.0).start()
    yield srv
    srv.stop()


def test_800_slow_connections_do_not_make_800_threads() -> None:
    srv = MllpServer("127.0.0.1", 0, ack_all, max_connections=64, max_connections_per_peer=1000,
                     read_timeout_s=5.0).start()
    peak = {"connections": 0, "threads": 0, "process_threads": 0}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.02):
            peak["connections"] = max(peak["connections"], srv.connections)
            peak["threads"] = max(peak["threads"], mllp_threads())
            peak["process_threads"] = max(peak["process_threads"], threading.active_count())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    socks: list[socket.socket] = []
    try:
        socks = open_many(srv.port, 800, "127.0.0.2")
        time.sleep(1.0)
        # the slow ones time out and give their slots back; a real sender is answered then
        deadline = time.monotonic() + 30
        answer = None
        while answer is None and time.monotonic() < deadline:
            try:
                answer = exchange(srv.port, timeout_s=2.0)
            except (ConnectionError, OSError):
                time.sleep(0.2)
        sampling.set()
        print(f"800 slow connections: peak {peak['connections']} held, {peak['threads']} connection threads, "
              f"{peak['process_threads']} threads in the process")
        assert peak["connections"] <= 64 and peak["threads"] <= 64
        assert answer == "AA", "no HL7 answer after the slow connections timed out"
    finally:
        sampling.set()
        for sock in socks:
            sock.close()
        srv.stop()


def test_per_address_cap_keeps_others_served() -> None:
    with MllpServer("127.0.0.1", 0, ack_all, max_connections=64, max_connections_per_peer=4,
                    read_timeout_s=60.0) as srv:
        socks = open_many(srv.port, 100, "127.0.0.2")
        try:
            time.sleep(0.5)
            assert srv.connections <= 4
            assert exchange(srv.port, source="127.0.0.1") == "AA"
        finally:
            for sock in socks:
                sock.close()


@pytest.mark.parametrize("dribble", [False, True], ids=["silent", "dribbling"])
def test_connection_without_a_complete_message_is_closed(server: MllpServer, dribble: bool) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"\x0bMSH|^~\\&|")
    start = time.monotonic()
    sock.settimeout(0.25)
    closed_after = None
    while time.monotonic() - start < 10:
        try:
            if not sock.recv(1024):
                closed_after = time.monotonic() - start
                break
        except TimeoutError:
            if dribble:
                sock.sendall(b"A")  # a byte at a time resets a per-read timeout, not the message deadline
        except ConnectionResetError:
            closed_after = time.monotonic() - start
            break
    sock.close()
    print(f"{'dribbling' if dribble else 'silent'} connection closed after {closed_after} s")
    assert closed_after is not None and closed_after < 6


CHILD = textwrap.dedent("""
    import logging, resource, sys, time
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    from edge_ingest.hl7 import ack
    from edge_ingest.mllp import MllpServer
    srv = MllpServer("127.0.0.1", 0, lambda text: ack(text, "AA"), max_connections=10000,
                     max_connections_per_peer=10000, read_timeout_s=300).start()
    print(srv.port, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    srv.stop()
""")


def test_accept_loop_survives_running_out_of_descriptors(tmp_path) -> None:
    """A child runs the listener with 64 descriptors; we hold enough connections to exhaust them, check it says so
    (without PHI), release them, and check it answers HL7 again."""
    log_path = tmp_path / "child.log"
    with open(log_path, "wb") as log_file:
        child = subprocess.Popen([sys.executable, "-c", CHILD, "64"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=log_file, cwd=os.getcwd())
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            assert exchange(port) == "AA"
            socks = open_many(port, 120, "127.0.0.2")  # the kernel queues what the child cannot accept
            deadline = time.monotonic() + 15
            while b"EMFILE" not in log_path.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert b"EMFILE" in log_path.read_bytes(), "the listener did not report running out of descriptors"
            with pytest.raises((ConnectionError, OSError)):
                exchange(port, timeout_s=1.0)  # while exhausted, a new connection is not served
            for sock in socks:
                sock.close()
            deadline = time.monotonic() + 20
            answer = None
            while answer is None and time.monotonic() < deadline:
                try:
                    answer = exchange(port, timeout_s=3.0)
                except (ConnectionError, OSError):
                    time.sleep(0.2)
            assert answer == "AA", "HL7 never answered again after descriptors were freed"
            assert child.poll() is None
        finally:
            if child.stdin:
                child.stdin.close()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
    text = log_path.read_text()
    print(text[-600:])
    assert "MRN1" not in text and "CTRL1" not in text
