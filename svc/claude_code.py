"""What Claude Code reads, made from catalog content: the one translation of an MCP registry
`server.json` into a `.mcp.json` server entry, and the names Claude Code accepts.

Claude Code expands `${VAR}` and `${VAR:-default}` in an entry's command, args, env, url and
headers from the environment it runs in, so every input the publisher left to the user
becomes such a placeholder, with the publisher's default when there is one. The same
entry goes into the bundle's `.mcp.json` and into a marketplace plugin's `.mcp.json`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# Names Claude Code refuses for a third-party marketplace (reserved for its own ones).
RESERVED_MARKETPLACE_NAMES = frozenset({
    "claude-code-marketplace", "claude-code-plugins", "claude-plugins-official", "anthropic-marketplace",
    "anthropic-plugins", "agent-skills", "life-sciences", "knowledge-work-plugins", "inline", "builtin",
})
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.-]+)\}")


def json_file(document: Any) -> bytes:
    """A JSON file as written for Claude Code and people alike: indented, keys sorted, newline-ended."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def marketplace_name(name: str) -> str:
    """The marketplace name of a team or user: lower-cased, every character but letters,
    digits and hyphens replaced by `-` (Claude Code wants kebab-case, no spaces, no path
    separators), with `-svc` added to a name Claude Code reserves for itself."""
    found = re.sub(r"[^a-z0-9-]", "-", name.lower())
    return f"{found}-svc" if found in RESERVED_MARKETPLACE_NAMES else found


def server_key(name: str) -> str:
    """The `.mcp.json` key (and plugin name) of a server: the last segment of its reverse-DNS
    name, as it is (`io.github.user/time.v2` → `time.v2`)."""
    return name.rsplit("/", 1)[-1]


def mcp_server_entry(server: dict[str, Any]) -> dict[str, Any] | None:
    """How Claude Code starts a server.json's server: its first package Claude Code can run
    (npm → `npx -y pkg@version`, pypi → `uvx pkg==version`, oci → `docker run` with the
    package's runtime arguments), else its first remote (`type` http or sse, `url`,
    `headers`). None when there is nothing Claude Code could start."""
    for package in server.get("packages") or []:
        entry = _package_entry(package)
        if entry is not None:
            return entry
    for remote in server.get("remotes") or []:
        entry = {"type": "sse" if remote["type"] == "sse" else "http", "url": _render(remote["url"], remote.get("variables"))}
        headers = {header["name"]: _input_value(header, header["name"]) for header in remote.get("headers") or []}
        if headers:
            entry["headers"] = headers
        return entry
    return None


def _package_entry(package: dict[str, Any]) -> dict[str, Any] | None:
    identifier, version = package["identifier"], package.get("version")
    registry = package.get("registryType")
    runtime = _arguments(package.get("runtimeArguments") or [])
    environment = package.get("environmentVariables") or []
    if registry == "npm":
        command, args = "npx", ["-y", *runtime, f"{identifier}@{version}" if version else identifier]
    elif registry == "pypi":
        command, args = "uvx", [*runtime, f"{identifier}=={version}" if version else identifier]
    elif registry == "oci":
        image = f"{identifier}:{version}" if version and ":" not in identifier.rsplit("/", 1)[-1] else identifier
        passed = _passed_to_container(runtime)
        # docker hands a container only the variables named with -e: each declared one is passed.
        forwarded = [flag for v in environment if v["name"] not in passed for flag in ("-e", v["name"])]
        command, args = "docker", ["run", "-i", "--rm", *runtime, *forwarded, image]
    else:
        return None
    entry: dict[str, Any] = {"command": command, "args": [*args, *_arguments(package.get("packageArguments") or [])]}
    env = {v["name"]: _input_value(v, v["name"]) for v in environment}
    if env:
        entry["env"] = env
    return entry


def _passed_to_container(args: list[str]) -> set[str]:
    """The variable names a `docker run` command line already passes (`-e NAME[=value]`)."""
    return {value.split("=", 1)[0] for flag, value in zip(args, args[1:]) if flag in ("-e", "--env")}


def _arguments(arguments: list[dict[str, Any]]) -> list[str]:
    """Command-line words of server.json arguments: a named one is its flag, then its value
    if it has one; a positional one is its value, or a placeholder named by its hint."""
    words: list[str] = []
    for argument in arguments:
        if argument.get("type") == "named":
            words.append(argument["name"])
            value = _input_value(argument, None)
        else:
            value = _input_value(argument, argument.get("valueHint"))
        if value is not None:
            words.append(value)
    return words


def _input_value(given: dict[str, Any], placeholder_name: str | None) -> str | None:
    """An input's value: its own `value` (its `{variables}` filled in), else a placeholder
    `${NAME}` or `${NAME:-default}` named after it, else its default, else None."""
    if given.get("value") is not None:
        return _render(given["value"], given.get("variables"))
    if placeholder_name is not None:
        return _placeholder(placeholder_name, given.get("default"))
    return given.get("default")


def _render(template: str, variables: dict[str, Any] | None) -> str:
    """`template` with each `{name}` replaced by that variable's value, else by a placeholder."""

    def fill(match: re.Match[str]) -> str:
        variable = (variables or {}).get(match.group(1))
        if variable is None:
            return _placeholder(match.group(1), None)
        return _input_value(variable, match.group(1)) or ""

    return _PLACEHOLDER.sub(fill, template)


def _placeholder(name: str, default: str | None) -> str:
    variable = re.sub(r"[^A-Z0-9_]", "_", name.upper())
    return f"${{{variable}:-{default}}}" if default is not None else f"${{{variable}}}"
