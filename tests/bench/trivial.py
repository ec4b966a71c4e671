"""The baseline server: a trivial FastAPI endpoint under the same uvicorn settings as `svc serve`.

`python -m tests.bench.trivial --host H --port P --workers N` runs it the way `svc serve`
runs the service (`svc.serving.run` with the same options), so the ratio of the two measures
what the service adds on top of FastAPI + uvicorn on this machine.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

from svc import serving

app = FastAPI()


@app.get("/trivial")
async def trivial() -> dict[str, object]:
    return {"status": "ok", "value": 42}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same options cmd_serve passes (svc/cli.py).
    serving.run(uvicorn.Config(
        "tests.bench.trivial:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    ))


if __name__ == "__main__":
    main()
