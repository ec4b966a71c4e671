"""The command line as an operator reads it: help with defaults, version, listings, one owner spelling."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from svc.cli import build_parser, main
from svc.errors import ServiceError
from svc.services.auth import Principal

ROOT = Path(__file__).resolve().parent.parent


def run(settings, capsys, *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    code = args.handler(args, settings)
    out, err = capsys.readouterr()
    return code, out, err


def every_option(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "version"):
            yield parser.prog, action
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                yield from every_option(command)


def test_every_option_says_what_it_does_and_its_default():
    missing = [f"{prog} {action.option_strings[0]}" for prog, action in every_option(build_parser())
               if not action.help]
    assert missing == []
    serve = subprocess.run([sys.executable, "-m", "svc.cli", "serve", "--help"], capture_output=True, text=True,
                           cwd=ROOT, timeout=60).stdout
    assert "(default: SVC_PORT, else 8000)" in serve and "(default: SVC_WORKERS, else 1)" in serve


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"svc {version('svc')}"


def test_users_and_teams_are_listed_and_named_one_way(settings, client, capsys):
    code, ada_id, _ = run(settings, capsys, "user", "create", "--email", "ada@example.com", "--username", "ada")
    assert code == 0
    run(settings, capsys, "user", "create", "--email", "bob@example.com", "--username", "bob")

    code, team_id, err = run(settings, capsys, "team", "create", "--name", "platform", "--owner", "user:ada")
    assert code == 0 and "owned by user:ada" in err
    code, _, err = run(settings, capsys, "team", "add-member", "platform", "bob", "--role", "admin")
    assert code == 0 and err.strip() == "bob is admin of team platform"
    page = client.app.state.services.teams.members(Principal.operator(), team_id.strip(), limit=10)
    assert sorted((m.username, m.role) for m in page.items) == [("ada", "owner"), ("bob", "admin")]

    code, out, _ = run(settings, capsys, "team", "list")
    assert code == 0 and out.split()[1] == "platform"
    code, out, _ = run(settings, capsys, "user", "list")
    assert [line.split()[1] for line in out.splitlines()] == ["ada", "bob"]
    assert out.splitlines()[0].startswith(ada_id.strip())

    code, _, err = run(settings, capsys, "user", "delete", "bob")
    assert code == 0 and "deleted user bob" in err
    code, out, _ = run(settings, capsys, "user", "list")
    assert [line.split()[1] for line in out.splitlines()] == ["ada"]


def test_an_owner_spelled_otherwise_is_refused_with_the_spelling(settings, client):
    args = build_parser().parse_args(["team", "create", "--name", "platform", "--owner", "01J0000000000000000000000"])
    with pytest.raises(ServiceError, match="--owner must be user:USERNAME, not '01J0000000000000000000000'"):
        args.handler(args, settings)


def test_pytest_prints_its_summary_line_when_asked_to_be_quiet(tmp_path):
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "-x", "-q", "-c", str(ROOT / "pyproject.toml"),
                             "--rootdir", str(tmp_path), str(tmp_path / "test_one.py")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("1 passed")
