"""server.json: an MCP server definition as the MCP registry publishes it.

Validated with `jsonschema` against the registry's server schema, shipped as
`schemas/server.schema.json` (version 2025-12-11; its source is in `schemas/README.md`).
The schema's `$ref`s all point inside the file, so nothing is fetched at run time.

The name: the registry names servers in reverse-DNS form with exactly one slash
(`io.github.user/weather`, pattern `^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$`), and the catalog item
of an MCP server carries that same full name. "Equal" means equal as strings, case included:
the item `io.github.user/weather` holds a server.json whose `name` is `io.github.user/weather`.

`format: uri` is not enforced: jsonschema checks it only with the optional `rfc3987` package,
which the project does not install (the schema's `pattern`s on transport URLs still apply).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from svc.json_documents import violations
from svc.validators.strict_json import validate_json_content
from svc.validators.violations import Violation, same_name

SERVER_SCHEMA_PATH = Path(__file__).parent / "schemas" / "server.schema.json"
SERVER_SCHEMA: dict[str, Any] = json.loads(SERVER_SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_mcp_server(name: str, content: str) -> list[Violation]:
    """Every way `content` fails to be the server.json of the item `name`; [] when it is one.

    Raises BadRequest when `content` is not JSON (or not exactly representable JSON).
    """
    return validate_json_content(content, "server.json", lambda document: _server_rules(name, document))


def _server_rules(name: str, document: Any) -> list[Violation]:
    found = [Violation(error["path"], error["message"]) for error in violations(SERVER_SCHEMA, document)]
    if isinstance(document, dict):
        found += same_name(document.get("name"), name, "/name")
    return found
