"""How `svc serve` runs uvicorn: with several workers, each listens on its own socket bound to the
one address (SO_REUSEPORT), so that the kernel spreads new connections over the workers.

With the one socket uvicorn otherwise shares between its workers, the worker that wakes first
accepts every connection waiting. A load balancer's keep-alive connections, opened together, can
then all land on one worker, and the host serves with one core: measured here, 16 connections
opened by wrk split 15/1 and 16/0 between two workers as often as evenly. The kernel's
distribution by address hash has no such bias.

uvicorn's own supervisor still runs the workers (restarts, signals): it hands each worker the
sockets it was given, and the one given here turns, as it is handed over, into the worker's own
socket on the same address. The supervisor's copy stays bound without listening: it holds the
port, and the kernel gives connections only to listening sockets. One change to it
(`Supervisor`): it answers signals while a worker is slow to answer its health check.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

# Linux balances connections over the sockets sharing a port; other systems accept SO_REUSEPORT
# but send every connection to one of them (macOS, the BSDs), so they keep the shared socket.
SPREADS_CONNECTIONS = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


class Supervisor(Multiprocess):
    """uvicorn's supervisor, answering signals while a worker is slow to answer its health check.

    uvicorn asks each worker in one blocking call of up to `timeout_worker_healthcheck` (60 s
    for `svc serve`) and looks at signals only between those calls, so a SIGTERM while a worker
    was starting on a loaded host, or hung, waited up to a minute. Here a worker is asked again
    every second for as long, with signals handled in between; one that never answers is
    killed as uvicorn would. Only when a worker is dead or killed does uvicorn's own check run
    (it replaces the worker, or stops when one failed to start); while all answer, none is
    asked twice."""

    def keep_subprocess_alive(self) -> None:
        lost = False
        for process in self.processes:
            deadline = time.monotonic() + self.config.timeout_worker_healthcheck
            while process.process.is_alive() and not process.ping(timeout=1):
                if self.signal_queue or self.should_exit.is_set():
                    return  # `run` handles the signal first, then asks again
                if time.monotonic() >= deadline:
                    process.kill()  # hung
                    lost = True
                    break
            lost = lost or not process.process.is_alive()
        if lost:
            super().keep_subprocess_alive()


def run(config: uvicorn.Config, on_listening: Callable[[], None] = lambda: None) -> None:
    """Serve `config` until a signal stops it, in this process or in `config.workers` workers;
    OSError when its address cannot be bound (something listens there already). `on_listening`
    is called once a connection to the address is accepted, from another thread."""
    family, address = _address(config.host, config.port)
    if config.workers > 1 and SPREADS_CONNECTIONS:
        held = _supervisors_socket(family, address)
        _call_once_listening(family, held.getsockname(), on_listening)
        Supervisor(config, sockets=[held]).run()
        return
    listening = _bound(family, address)
    _call_once_listening(family, listening.getsockname(), on_listening)
    if config.workers > 1:
        Supervisor(config, sockets=[listening]).run()
    else:
        uvicorn.Server(config).run(sockets=[listening])


def _call_once_listening(family: int, address: tuple, call: Callable[[], None]) -> None:
    """Call `call` once something accepts a connection on `address`, which this process has bound
    (so nothing else can be listening there): a worker has started to listen."""

    def wait() -> None:
        while True:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(1)
                if probe.connect_ex(_reachable(family, address)) == 0:
                    call()
                    return
            time.sleep(0.05)

    threading.Thread(target=wait, name="svc-listening", daemon=True).start()


def _reachable(family: int, address: tuple) -> tuple:
    """`address` as a client reaches it: a wildcard host becomes the loopback address."""
    host, *rest = address
    if host in ("0.0.0.0", "::"):
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    return (host, *rest)


class _WorkerSocket(socket.socket):
    """Bound, not listening, in the supervisor; handed to a worker (pickled), it becomes a new
    socket bound to the same address with SO_REUSEPORT, on which the worker's server listens."""

    def __reduce__(self) -> tuple:
        return _bound, (self.family, self.getsockname(), True)


def _address(host: str, port: int) -> tuple[int, tuple]:
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return family, address


def _bound(
    family: int, address: tuple, reuse_port: bool = False, kind: type[socket.socket] = socket.socket
) -> socket.socket:
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _supervisors_socket(family: int, address: tuple) -> socket.socket:
    """The socket that holds the port for the workers.

    Any process of this user could share a port bound with SO_REUSEPORT, a forgotten `svc serve`
    among them, and would then silently take part of the traffic: the address is first bound
    without it, which fails while anything else holds it."""
    with _bound(family, address) as probe:
        address = probe.getsockname()  # the port chosen, when it was 0
    return _bound(family, address, reuse_port=True, kind=_WorkerSocket)
