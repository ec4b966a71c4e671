"""The service served as `svc serve` serves it (`svc.serving`: its supervisor, one socket per
worker), on the database and data directory the environment names, without the command's
bootstrap (migrations, first token, key file): `python -m tests.serve_app PORT WORKERS`."""

import sys

from svc import serving
from svc.log import configure_logging

if __name__ == "__main__":  # not in the workers, which import this module again (spawn)
    configure_logging("INFO", "text")
    serving.run(serving.service_config("127.0.0.1", int(sys.argv[1]), int(sys.argv[2])))
