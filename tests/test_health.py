import pytest
from sqlalchemy import text

from refit.app import create_app


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


async def _worker_with_heartbeat(resources, age_seconds: float) -> None:
    # A worker's row as procrastinate registers it; its heartbeat aged in SQL, not by waiting.
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now() - make_interval(secs => :age))"
            ),
            {"age": age_seconds},
        )


async def test_readyz_is_503_when_the_worker_it_runs_beside_is_dead(resources, open_client):
    """`refit run` (and a process running its own worker) expects a live worker: one whose
    heartbeat is older than REFIT_WORKER_STALLED_AFTER_SECONDS is reported dead, not ready."""
    app = create_app(resources.settings, resources=resources)
    app.state.expect_worker = True
    stalled_after = resources.settings.worker_stalled_after_seconds
    async with app.router.lifespan_context(app), open_client(app) as http:
        none = await http.get("/readyz")
        await _worker_with_heartbeat(resources, age_seconds=stalled_after + 60)
        dead = await http.get("/readyz")
        await _worker_with_heartbeat(resources, age_seconds=0)
        alive = await http.get("/readyz")
    for response in (none, dead):
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["detail"] == "No job worker is alive"
        assert body["checks"] == {"database": "ok", "redis": "ok"}
        assert body["workers"]["alive"] == 0 and body["workers"]["required"] is True
    assert dead.json()["workers"]["last_heartbeat"] is not None
    assert alive.status_code == 200
    assert alive.json()["workers"]["alive"] == 1


async def test_an_api_alone_reports_a_dead_worker_but_stays_ready(client, resources):
    """`refit api` on its own serves while workers elsewhere restart: the heartbeat is
    reported, readiness does not depend on it."""
    await _worker_with_heartbeat(resources, age_seconds=3600)
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["workers"]["alive"] == 0
    assert "required" not in response.json()["workers"]
