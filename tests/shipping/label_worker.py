"""A real worker process for the kill tests: `python -m tests.shipping.label_worker`.

Reads REFIT_* settings from the environment like `refit worker` (the test points it at its
database, Redis and local Shippo server) and runs refit.queue.build_worker().
"""

import asyncio

import refit.shipping.tasks  # noqa: F401  (registers the shipping tasks, as TASK_MODULES does)
from refit import queue
from refit.resources import close_resources, open_resources
from refit.settings import Settings


async def main() -> None:
    settings = Settings()
    assert settings.database_url
    resources = await open_resources(settings)
    pool = await queue.open_queue(settings.database_url, max_size=4)
    try:
        await queue.build_worker().run()
    finally:
        await queue.close_queue(pool)
        await close_resources(resources)


if __name__ == "__main__":
    asyncio.run(main())
