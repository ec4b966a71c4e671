"""Messages that name the rule: a 4xx says, in words, what is allowed and what to do instead."""

from __future__ import annotations

import pytest

from tests.claude_md_helpers import PROBLEM, assert_problem, ada, person  # noqa: F401 (fixtures)
from tests.team_helpers import crew  # noqa: F401 (fixture)
from tests.test_catalog import made

API = "/api/v1"


def detail_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return response.json()["detail"]


@pytest.mark.parametrize("name", ["Bad Name!", "..", "x" * 300])
def test_an_invalid_name_is_explained_in_words_not_a_regular_expression(client, admin, name):
    detail = detail_of(client.post(f"{API}/applications", json={"name": name}, headers=admin), 422)
    assert "must be 1–256 letters, digits" in detail and "^" not in detail and "[" not in detail, detail


def test_an_invalid_sha_is_explained_in_words(client, ada):
    detail = detail_of(client.get(f"{ada.document}/versions/not-a-sha", headers=ada.headers), 422)
    assert "7 to 40 hex digits" in detail and "^" not in detail, detail


def test_an_empty_message_is_named_as_such(client, ada):
    response = client.put(ada.document, json={"content": "# hi\n", "message": ""}, headers=ada.headers)
    detail = detail_of(response, 422)
    assert "at least 1 item" not in detail and "message" in detail and "empty" in detail, detail


def test_a_user_token_is_a_user_token(client, admin):
    detail = detail_of(client.post(f"{API}/tokens", json={"name": "x", "role": "user"}, headers=admin), 422)
    assert "an user" not in detail and "a user token" in detail, detail


def test_a_member_releasing_a_catalog_item_is_told_which_action_it_may_not_take(client, crew):
    item = made(client, crew.admin.headers, {"team_id": crew.team["id"]})
    refused = client.post(f"{API}/catalog/{item['id']}/releases", json={"version": "1.0.0"}, headers=crew.member.headers)
    detail = detail_of(refused, 403)
    assert "release" in detail and "document" not in detail, detail


@pytest.mark.parametrize("method, path", [("POST", "/applications"), ("PATCH", "/configurations/{id}")])
def test_json_sent_as_curl_d_sends_it_is_not_said_to_be_a_form(client, admin, method, path):
    # `curl -d '{...}'` without -H labels the body application/x-www-form-urlencoded.
    application = client.post(f"{API}/applications", json={"name": "shop"}, headers=admin).json()
    configuration = client.post(f"{API}/applications/{application['id']}/configurations",
                                json={"name": "main", "config": {}}, headers=admin).json()
    response = client.request(method, API + path.format(id=configuration["id"]), content=b'{"name": "billing"}',
                              headers=admin | {"Content-Type": "application/x-www-form-urlencoded"})
    detail = detail_of(response, 415)
    assert "x-www-form-urlencoded" not in detail and "-H 'Content-Type: application/json'" in detail, detail
