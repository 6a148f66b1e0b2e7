from tests.shipping.conftest import shippo_server, shippo_settings  # noqa: F401
