"""`GET /healthz` (API.md, Schema and docs): 200 when the database, cache and broker answer; 503
naming the part that is down. It needs no key and gives no details beyond ok/down."""

import pytest

from billing_project import health

pytestmark = pytest.mark.django_db


def test_all_parts_up(anonymous_api):
    response = anonymous_api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "cache": "ok", "broker": "ok"}


def _down():
    raise ConnectionError("redis://:s3cret@10.0.0.9:6379 refused")


@pytest.mark.parametrize("part", ["database", "cache", "broker"])
def test_a_part_down_is_503_naming_it(anonymous_api, monkeypatch, part):
    monkeypatch.setitem(health.CHECKS, part, _down)

    response = anonymous_api.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body[part] == "down"
    assert body["down"] == [part]
    assert all(body[other] == "ok" for other in health.CHECKS if other != part)
    assert "s3cret" not in response.content.decode()


def test_a_check_answering_wrong_is_down(anonymous_api, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "cache", lambda: False)
    response = anonymous_api.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["cache"]


def test_the_real_cache_check_notices_a_cache_that_loses_writes(anonymous_api, monkeypatch):
    monkeypatch.setattr(health.cache, "get", lambda *args, **kwargs: None)
    response = anonymous_api.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["cache"]
