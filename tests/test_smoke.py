from tests.conftest import bearer


def test_admin_lists_tokens(client, admin):
    response = client.get("/api/v1/tokens", headers=admin)
    assert response.status_code == 200
    assert [t["role"] for t in response.json()["items"]] == ["admin"]
