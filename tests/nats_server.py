"""A real nats-server (Debian's 2.9) for the NATS transport's tests: on a free loopback port, with
JetStream storing in a temporary directory, stopped (and its directory removed) afterwards.

`NatsServer.kill` and `start` again on the same port and store directory are what a crashed and
restarted server looks like to the sprint.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

START_GUARD = 10.0  # seconds for nats-server to accept connections before the test fails


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """One nats-server process with JetStream; `url` is what `--listen`/`--connect` take."""

    def __init__(self, store: Path, *extra: str, jetstream: bool = True) -> None:
        self.port = free_port()
        self.store = store
        self.extra = ("-js", "-sd", str(store / "js"), *extra) if jetstream else extra
        self.log = store / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        executable = shutil.which("nats-server")
        assert executable is not None, "nats-server is not installed (apt-get install nats-server; .ci/run does)"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [executable, "-a", "127.0.0.1", "-p", str(self.port), *self.extra],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_GUARD
        while True:
            assert self.process.poll() is None, f"nats-server exited: {self.log.read_text()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, f"nats-server did not listen on {self.port}"
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, nothing flushed that was not already on disk."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def nats_server() -> NatsServer:  # type: ignore[misc]
    """A fresh nats-server with JetStream in its own temporary directory."""
    store = Path(tempfile.mkdtemp(prefix="sd-nats-", dir="/tmp"))
    server = NatsServer(store).start()
    yield server
    server.stop()
    shutil.rmtree(store, ignore_errors=True)
