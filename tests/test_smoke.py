import gc

from fastapi.testclient import TestClient

from svc.api.app import create_app


def test_admin_lists_tokens(client, admin):
    response = client.get("/api/v1/tokens", headers=admin)
    assert response.status_code == 200
    assert [t["role"] for t in response.json()["items"]] == ["admin"]


def test_a_running_app_keeps_what_it_started_with_out_of_the_collectors_passes_until_it_stops(settings):
    """A full garbage collection walks every object not frozen: the app's start-up objects are
    frozen while it runs (no pause of theirs for requests in flight), and given back when it
    stops, so an app dropped after it stopped (as tests drop many) can be collected."""
    gc.unfreeze()
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0
