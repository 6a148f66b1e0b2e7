import pytest


async def test_readyz_reports_database_redis_and_workers(client):
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"] == {"database": "ok", "redis": "ok"}
    assert body["workers"]["alive"] == 0


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("down", ["database", "redis"])
async def test_readyz_is_503_when_a_dependency_is_unreachable(open_client_without, down):
    async with open_client_without(down) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (503, "dependency_unavailable")
    # The one that is down is named; the other still answers, so it is not everything failing.
    (up,) = {"database", "redis"} - {down}
    assert body["checks"][up] == "ok"
    assert body["checks"][down].startswith("error: ")
    assert body["detail"] == f"A dependency is down: {down}"


async def test_healthz_stays_up_while_dependencies_are_down(open_client_without):
    async with open_client_without("database", "redis") as http:
        alive = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"].startswith("error: ") and checks["redis"].startswith("error: ")
    assert ready.json()["detail"] == "A dependency is down: database, redis"
