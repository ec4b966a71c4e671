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
(`Supervisor`): no worker slow to answer its health check delays the signals or the other
workers' replacement.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Callable

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")  # where uvicorn's supervisor says the same

# A worker answers the supervisor's health check only once its interpreter is up: on a busy host
# that takes longer than uvicorn's 5 s, and a worker killed for it is started again, forever.
WORKER_HEALTHCHECK_SECONDS = 60

# Linux balances connections over the sockets sharing a port; other systems accept SO_REUSEPORT
# but send every connection to one of them (macOS, the BSDs), so they keep the shared socket.
SPREADS_CONNECTIONS = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


class Supervisor(Multiprocess):
    """uvicorn's supervisor, asking its workers without blocking on any one of them.

    uvicorn asks each worker in one blocking call of up to `timeout_worker_healthcheck` (60 s for
    `svc serve`). While a worker was slow to answer (starting on a loaded host, or hung) nothing
    else was seen: not a signal (a SIGTERM waited up to a minute), not another worker's death. A
    worker killed between uvicorn's ping and its answer held the check for the whole minute too:
    the supervisor holds the child's end of the pipe, so the death does not end the wait.

    Here every worker is asked in turn for at most a second, signals are handled between two
    workers, and a worker is replaced as soon as it is found dead, or once it has not answered
    for `timeout_worker_healthcheck` (then it is killed first). A worker that died before it
    started serving stops the supervisor, as with uvicorn: it would fail the same way again."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self._answered: dict[Process, float] = {}  # when each worker last answered, or started
        self.startup_failed = False

    def keep_subprocess_alive(self) -> None:
        started = time.monotonic()  # for a worker not seen before (new, or from a SIGHUP restart)
        self._answered = {process: self._answered.get(process, started) for process in self.processes}
        for index, process in enumerate(self.processes):
            if self.signal_queue or self.should_exit.is_set():
                return  # `run` handles the signal first, then asks again
            if process.process.is_alive() and process.ping(timeout=1):
                self._answered[process] = time.monotonic()
            elif not process.process.is_alive() or self._silent_too_long(process):
                self._replace(index)

    def _silent_too_long(self, process: Process) -> bool:
        return time.monotonic() - self._answered[process] >= self.config.timeout_worker_healthcheck

    def _replace(self, index: int) -> None:
        process = self.processes[index]
        process.kill()  # it is dead already, or hung
        process.join()
        if process.exitcode == STARTUP_FAILURE:
            logger.error("Child process [%s] failed to start, stopping the parent process.", process.pid)
            self.startup_failed = True
            self.should_exit.set()
            return
        logger.info("Child process [%s] died", process.pid)
        replacement = Process(self.config, self.sockets)
        replacement.start()
        self.processes[index] = replacement


def service_config(host: str, port: int, workers: int) -> uvicorn.Config:
    """How `svc serve` has uvicorn serve the service: its logging and access log are the
    service's own (`svc.log`), set up in each worker by the app."""
    return uvicorn.Config(
        "svc.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )


def run(config: uvicorn.Config, on_listening: Callable[[], None] = lambda: None) -> bool:
    """Serve `config` until a signal stops it, in this process or in `config.workers` workers;
    False when the application failed to start instead, OSError when the address cannot be bound
    (something listens there already). `on_listening` is called once a connection to the address
    is accepted, from another thread."""
    family, address = _address(config.host, config.port)
    if config.workers > 1:
        handed = _supervisors_socket(family, address) if SPREADS_CONNECTIONS else _bound(family, address)
        _call_once_listening(family, handed.getsockname(), on_listening)
        supervisor = Supervisor(config, sockets=[handed])
        supervisor.run()
        return not supervisor.startup_failed
    listening = _bound(family, address)
    _call_once_listening(family, listening.getsockname(), on_listening)
    try:
        uvicorn.Server(config).run(sockets=[listening])
    except SystemExit as exit_:
        if exit_.code != STARTUP_FAILURE:
            raise
        return False
    return True


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
