"""A real worker process for the queue tests: `python -m tests.foundation.queue_worker`.

Reads REFIT_* settings from the environment like `refit worker`, with the probe tasks loaded.
"""

import asyncio

import tests.foundation.queue_probe  # noqa: F401  (registers the probe tasks)
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
