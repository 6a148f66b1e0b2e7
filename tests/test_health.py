async def test_readyz_reports_database_redis_and_workers(client):
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"] == {"database": "ok", "redis": "ok"}
    assert body["workers"]["alive"] == 0


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.json() == {"status": "ok"}
