"""One record, one log line (issue 22): no request can end a log line and forge the next."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from svc.log import configure_logging

FORGED = "2026-12-07 14:00:00,000 INFO svc.access [FORGED]"


def raw_get(base_url: str, target: str, headers: str = "") -> bytes:
    """Send `GET target` byte for byte (no client normalises it) and return the status line."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n".encode())
        return connection.recv(65536).split(b"\r\n", 1)[0]


def lines_containing(path, words: str, timeout: float = 10) -> list[str]:
    """The lines of the log file with `words`, waiting for the first one to be written."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in path.read_text().splitlines() if words in line]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_newline_in_the_path_cannot_forge_an_access_log_line(live_server, tmp_path):
    server = live_server(workers=1, SVC_ACCESS_LOG="true")
    target = "/api/v1/x%0A2026-12-07%2014:00:00,000%20INFO%20svc.access%20[FORGED]%0D%1B[2K%E2%80%A8"
    assert raw_get(server.base_url, target).startswith(b"HTTP/1.1 4")
    (log_file,) = tmp_path.glob("uvicorn-*.log")
    found = lines_containing(log_file, "FORGED")
    assert len(found) == 1, found
    assert "/api/v1/x\\x0a" + FORGED + "\\x0d\\x1b[2K\\u2028 " in found[0]
    assert found[0].split(" ", 2)[1] != "14:00:00,000"  # the line is the real record, not the forgery
    assert not any(line.startswith(FORGED) for line in log_file.read_text().splitlines())


@pytest.fixture
def log_text() -> Iterator[Callable[[str], io.StringIO]]:
    """The service's logging configured in a format, written to a buffer instead of stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def configured(fmt: str) -> io.StringIO:
        configure_logging("INFO", fmt)
        buffer = io.StringIO()
        root.handlers[0].setStream(buffer)
        return buffer

    yield configured
    root.handlers[:] = handlers
    root.setLevel(level)


def test_user_text_in_any_log_message_stays_on_its_line(log_text):
    buffer = log_text("text")
    logging.getLogger("svc.test").warning("could not delete %s: %s", "ref\nname", "detail\r\n" + FORGED)
    assert buffer.getvalue().count("\n") == 1
    assert "ref\\x0aname: detail\\x0d\\x0a" + FORGED in buffer.getvalue()


def test_a_traceback_never_starts_a_line_like_a_record(log_text):
    buffer = log_text("text")
    try:
        raise ValueError("bad value\n" + FORGED)
    except ValueError:
        logging.getLogger("svc.test").exception("unhandled error")
    first, *rest = buffer.getvalue().splitlines()
    assert first.endswith("unhandled error") and rest
    assert all(line.startswith("    ") for line in rest)


def test_a_json_log_line_is_one_line_with_the_same_escapes(log_text):
    buffer = log_text("json")
    logging.getLogger("svc.test").warning("path %s", "/x\u2028" + FORGED + "\\")
    (line,) = buffer.getvalue().splitlines()  # str.splitlines also splits at U+2028
    assert json.loads(line)["message"] == "path /x\\u2028" + FORGED + "\\\\"
