"""POST …/claude-md/import: a multipart `.md` upload becomes a new version, checked whole first."""

from __future__ import annotations

import pytest

from tests.claude_md_helpers import API, ada, assert_problem, git, person, save  # noqa: F401

MIB = 1024 * 1024


def upload(client, person, data: bytes, filename: str = "CLAUDE.md", content_type: str | None = "text/markdown"):
    file = (filename, data) if content_type is None else (filename, data, content_type)
    return client.post(f"{API}/me/claude-md/import", files={"file": file}, headers=person.headers)


def test_import_saves_a_version_named_after_the_file(client, ada):
    response = upload(client, ada, b"# Imported\n", filename="team-rules.md")
    assert response.status_code == 200
    body = response.json()
    assert (body["content"], body["version"]) == ("# Imported\n", 1)
    assert response.headers["etag"] == f'"{body["commit_sha"]}"'
    [entry] = client.get(f"{API}/me/claude-md/history", headers=ada.headers).json()["versions"]
    assert entry["message"] == "Import claude.md from team-rules.md"


def test_the_filename_loses_any_directory_part(client, ada):
    assert upload(client, ada, b"x", filename="C:\\Users\\ada\\notes.MD").status_code == 200
    [entry] = client.get(f"{API}/me/claude-md/history", headers=ada.headers).json()["versions"]
    assert entry["message"] == "Import claude.md from notes.MD"


@pytest.mark.parametrize(
    "content_type",
    ["text/markdown", "text/x-markdown", "text/plain; charset=utf-8", "application/octet-stream", None],
)
def test_markdown_content_types_are_accepted(client, ada, content_type):
    assert upload(client, ada, b"# ok", content_type=content_type).status_code == 200


def test_an_empty_file_is_an_empty_version(client, ada):
    response = upload(client, ada, b"")
    assert response.status_code == 200
    assert (response.json()["content"], response.json()["version"]) == ("", 1)


def test_a_byte_order_mark_is_dropped(client, ada):
    assert upload(client, ada, b"\xef\xbb\xbf# Title\n").json()["content"] == "# Title\n"


def test_crlf_line_ends_become_lf(client, ada):
    assert upload(client, ada, b"one\r\ntwo\r\nlone\rcr\r\n").json()["content"] == "one\ntwo\nlone\rcr\n"


def test_a_file_of_exactly_the_limit_is_accepted_and_one_byte_more_is_413(client, ada):
    assert upload(client, ada, b"a" * MIB).json()["version"] == 1
    assert_problem(upload(client, ada, b"a" * (MIB + 1)), 413, "larger than the limit of 1048576 bytes")
    # The limit is on the file as uploaded, byte-order mark included.
    assert_problem(upload(client, ada, b"\xef\xbb\xbf" + b"a" * (MIB - 2)), 413)
    assert client.get(f"{API}/me/claude-md", headers=ada.headers).json()["version"] == 1


@pytest.mark.parametrize(
    ("filename", "content_type", "detail"),
    [
        ("notes.txt", "text/plain", "is not a .md file"),
        ("claude.md.exe", "text/markdown", "is not a .md file"),
        ("md", "text/markdown", "is not a .md file"),
        ("claude.md", "image/png", "is not Markdown"),
        ("claude.md", "application/json", "is not Markdown"),
        ("claude.md", "text/markdown; charset=latin-1", "only UTF-8"),
    ],
)
def test_wrong_file_or_content_type_is_415(client, ada, filename, content_type, detail):
    assert_problem(upload(client, ada, b"# x", filename=filename, content_type=content_type), 415, detail)
    assert client.get(f"{API}/me/claude-md", headers=ada.headers).json()["version"] == 0


@pytest.mark.parametrize("data", [b"caf\xe9\n", b"\xff\xfe#\x00", b"ok \xc3", b"\xef\xbb\xbf\xed\xa0\x80"])
def test_not_utf8_is_400_and_writes_nothing(client, ada, data, settings):
    assert_problem(upload(client, ada, data), 400, "not UTF-8")
    assert client.get(f"{API}/me/claude-md", headers=ada.headers).json()["version"] == 0
    assert git(settings, "count-objects") == "0 objects, 0 kilobytes\n"


def test_a_missing_file_field_is_422(client, ada):
    response = client.post(f"{API}/me/claude-md/import", data={"other": "x"}, headers=ada.headers)
    assert_problem(response, 422)
    response = client.post(f"{API}/me/claude-md/import", json={"content": "x"}, headers=ada.headers)
    assert_problem(response, 422)


def test_import_to_a_users_document_by_admin(client, admin, ada):
    save(client, ada.document, ada.headers, "before")
    response = client.post(
        f"{ada.document}/import", files={"file": ("claude.md", b"after", "text/markdown")}, headers=admin
    )
    assert response.json()["content"] == "after"
    assert response.json()["version"] == 2
