"""Read-modify-write races across four worker processes: clients that write with If-Match
(and read again on 412) lose no update, and revision and version numbers stay gapless.

What tests/test_configuration_history.py and tests/test_claude_md_concurrency.py already
show (one winner per ETag, unconditional writes each making one revision or version) is
not repeated here.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.claude_md_helpers import API, create_user
from tests.configuration_helpers import create_application, create_configuration

CLIENTS = 6
UPDATES_EACH = 8


def _increment(http: httpx.Client, url: str, client: int) -> tuple[list[int], int]:
    """Add one to the counter of a configuration, UPDATES_EACH times; the revisions written
    and the number of stale writes refused."""
    written, refused = [], 0
    while len(written) < UPDATES_EACH:
        current = http.get(url)
        assert current.status_code == 200, current.text
        config = current.json()["config"]
        config["counter"] += 1
        config["last"] = client
        response = http.put(url, json={"config": config}, headers={"If-Match": current.headers["etag"]})
        if response.status_code == 412:
            refused += 1  # somebody else wrote first: read again
            continue
        assert response.status_code == 200, response.text
        written.append(response.json()["revision"])
    return written, refused


def _append(http: httpx.Client, url: str, client: int) -> tuple[list[int], int]:
    """Append a line to a claude.md document, UPDATES_EACH times; the versions written and
    the number of stale writes refused."""
    written, refused = [], 0
    while len(written) < UPDATES_EACH:
        current = http.get(url)
        assert current.status_code == 200, current.text
        content = current.json()["content"] + f"client {client} line {len(written)}\n"
        response = http.put(url, json={"content": content}, headers={"If-Match": current.headers["etag"]})
        if response.status_code == 412:
            refused += 1
            continue
        assert response.status_code == 200, response.text
        written.append(response.json()["version"])
    return written, refused


def test_if_match_read_modify_write_loses_no_update(client, admin, live_server):
    application = create_application(client, admin, "counters")
    configuration = create_configuration(client, admin, application["id"], "counter", {"counter": 0})
    user = create_user(client, admin, "ada")
    document = f"{API}/users/{user['id']}/claude-md"
    assert client.put(document, json={"content": ""}, headers=admin).status_code == 200  # If-Match needs a version
    server = live_server(workers=4)
    counter = f"{API}/configurations/{configuration['id']}"

    def race(work, url: str, client_number: int) -> tuple[list[int], int]:
        with server.client(headers=admin, timeout=30) as http:
            return work(http, url, client_number)

    with ThreadPoolExecutor(2 * CLIENTS) as pool:
        counting = [pool.submit(race, _increment, counter, n) for n in range(CLIENTS)]
        appending = [pool.submit(race, _append, document, n) for n in range(CLIENTS)]
        counted = [future.result() for future in counting]
        appended = [future.result() for future in appending]
    revisions = [r for written, _ in counted for r in written]
    versions = [v for written, _ in appended for v in written]

    total = CLIENTS * UPDATES_EACH
    # Every acknowledged write has its own number, and together they leave no gap.
    assert sorted(revisions) == list(range(2, total + 2))
    assert sorted(versions) == list(range(2, total + 2))
    final = client.get(counter, headers=admin).json()
    assert (final["config"]["counter"], final["revision"]) == (total, total + 1)
    stored = [r["revision"] for r in client.get(f"{counter}/revisions?limit=100", headers=admin).json()["items"]]
    assert stored == list(range(total + 1, 0, -1))
    lines = client.get(document, headers=admin).json()["content"].splitlines()
    assert sorted(lines) == sorted(f"client {c} line {n}" for c in range(CLIENTS) for n in range(UPDATES_EACH))
    history = client.get(f"{document}/history?limit=100", headers=admin).json()["versions"]
    assert [v["version"] for v in history] == list(range(total + 1, 0, -1))
    refused = sum(n for _, n in counted + appended)
    print(f"\nconcurrency: {2 * total} updates with If-Match by {2 * CLIENTS} clients on 4 workers, "
          f"{refused} stale writes refused with 412 and retried, none lost")
