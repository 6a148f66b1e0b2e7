"""Row Level Security is enforced by the database: a user connection with role
`authenticated` and its JWT claims sees and changes only its own rows."""

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from refit.transactions import act_as_user


async def _seed(session, user_id, wallet):
    await session.execute(
        text("INSERT INTO users (id, wallet_address) VALUES (:id, :w)"),
        {"id": user_id, "w": wallet},
    )
    address_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO shipping_addresses (id, user_id, name, street1, city, state, zip) "
            "VALUES (:id, :u, 'N', '1 Main St', 'Austin', 'TX', '78701')"
        ),
        {"id": address_id, "u": user_id},
    )
    order_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO orders (id, user_id, device_brand, device_model, device_condition, "
            "quoted_price_usd, quoted_price_sol, shipping_address_id) "
            "VALUES (:id, :u, 'Apple', 'iPhone 13', 'good', 300, 2, :a)"
        ),
        {"id": order_id, "u": user_id, "a": address_id},
    )
    await session.execute(
        text("INSERT INTO order_status_history (order_id, status) VALUES (:o, 'pending')"),
        {"o": order_id},
    )
    return address_id, order_id


@pytest.fixture
async def two_users(resources):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with resources.sessionmaker() as session, session.begin():
        alice_rows = await _seed(session, alice, "alice-wallet")
        bob_rows = await _seed(session, bob, "bob-wallet")
    return {"alice": (alice, *alice_rows), "bob": (bob, *bob_rows)}


async def test_user_sees_only_own_rows(resources, two_users):
    alice, alice_address, alice_order = two_users["alice"]
    async with resources.sessionmaker() as session, session.begin():
        await act_as_user(session, alice)
        assert (await session.execute(text("SELECT current_user"))).scalar() == "authenticated"
        orders = (await session.execute(text("SELECT id, user_id FROM orders"))).all()
        addresses = (await session.execute(text("SELECT * FROM shipping_addresses"))).all()
        history = (await session.execute(text("SELECT order_id FROM order_status_history"))).all()
        users = (await session.execute(text("SELECT id FROM users"))).all()
    assert [(r.id, r.user_id) for r in orders] == [(alice_order, alice)]
    assert [r.id for r in addresses] == [alice_address]
    assert [r.order_id for r in history] == [alice_order]
    assert [r.id for r in users] == [alice]


async def test_user_without_claims_sees_nothing(resources, two_users):
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(text("SET LOCAL ROLE authenticated"))
        assert (await session.execute(text("SELECT count(*) FROM orders"))).scalar() == 0


async def test_insert_for_another_user_is_refused(resources, two_users):
    alice, *_ = two_users["alice"]
    bob, _, _ = two_users["bob"]
    async with resources.sessionmaker() as session:
        async with session.begin():
            await act_as_user(session, alice)
            with pytest.raises(DBAPIError, match="row-level security"):
                await session.execute(
                    text(
                        "INSERT INTO shipping_addresses (user_id, name, street1, city, state, zip)"
                        " VALUES (:u, 'X', '1 St', 'A', 'TX', '78701')"
                    ),
                    {"u": bob},
                )


async def test_update_of_another_users_row_changes_nothing(resources, two_users):
    alice, *_ = two_users["alice"]
    _, bob_address, bob_order = two_users["bob"]
    async with resources.sessionmaker() as session, session.begin():
        await act_as_user(session, alice)
        result = await session.execute(text("UPDATE shipping_addresses SET city = 'Nowhere'"), {})
        assert result.rowcount == 1  # only her own address
        result = await session.execute(
            text("DELETE FROM shipping_addresses WHERE id = :id"), {"id": bob_address}
        )
        assert result.rowcount == 0
    async with resources.sessionmaker() as session, session.begin():
        price = await session.scalar(
            text("SELECT quoted_price_usd FROM orders WHERE id = :id"), {"id": bob_order}
        )
        city = await session.scalar(
            text("SELECT city FROM shipping_addresses WHERE id = :id"), {"id": bob_address}
        )
    assert (price, city) == (300, "Austin")


# What a seller's own SQL (Supabase's Data API with their token, say) might try on their own
# order: every write to orders, history and quotes is the service's (the one door).
FORGERIES = [
    "UPDATE orders SET status = 'completed' WHERE id = :order",
    "UPDATE orders SET quoted_price_usd = 99999, quoted_price_sol = 999 WHERE id = :order",
    "UPDATE orders SET final_price_usd = 99999 WHERE id = :order",
    "UPDATE orders SET payment_tx_signature = 'x', label_error = NULL WHERE id = :order",
    "UPDATE orders SET user_id = :other WHERE id = :order",
    "SELECT id FROM orders WHERE id = :order FOR UPDATE",
    "DELETE FROM orders WHERE id = :order",
    "INSERT INTO orders (user_id, status, device_brand, device_model, device_condition, "
    "quoted_price_usd, quoted_price_sol) VALUES (:me, 'completed', 'A', 'B', 'good', 9999, 99)",
    "INSERT INTO order_status_history (order_id, status, actor) "
    "VALUES (:order, 'completed', 'operator:forged')",
    "UPDATE order_status_history SET actor = 'operator:forged' WHERE order_id = :order",
    "INSERT INTO quotes (user_id, device_brand, device_model, device_condition, "
    "base_price_usd, price_factor, price_usd, price_sol, price_lamports, sol_usd_rate, "
    "rate_source, expires_at) VALUES (:me, 'A', 'B', 'good', 9999, 1, 9999, 99, 99000000000, "
    "100, 'fixed', now() + interval '1 day')",
    "INSERT INTO idempotency_keys (principal, key, request_method, request_path, "
    "request_hash, response_status, response_body) "
    "VALUES ('user:' || :me, 'k', 'POST', '/api/orders/create', 'h', 201, '{}')",
    "INSERT INTO shipping_events (order_id, event_type, status) "
    "VALUES (:order, 'forged', 'DELIVERED')",
]


@pytest.mark.parametrize("statement", FORGERIES)
async def test_a_seller_cannot_change_their_own_order_by_sql(resources, two_users, statement):
    alice, _, alice_order = two_users["alice"]
    bob, *_ = two_users["bob"]
    async with resources.sessionmaker() as session:
        async with session.begin():
            await act_as_user(session, alice)
            with pytest.raises(DBAPIError, match="permission denied"):
                await session.execute(
                    text(statement), {"order": alice_order, "me": str(alice), "other": bob}
                )
    async with resources.sessionmaker() as session, session.begin():
        row = (
            await session.execute(
                text(
                    "SELECT status, quoted_price_usd, final_price_usd, user_id, "
                    "(SELECT count(*) FROM order_status_history h WHERE h.order_id = o.id) "
                    "AS moves FROM orders o WHERE id = :id"
                ),
                {"id": alice_order},
            )
        ).one()
    assert (row.status, row.quoted_price_usd, row.final_price_usd) == ("pending", 300, None)
    assert (row.user_id, row.moves) == (alice, 1)


async def test_user_role_cannot_write_system_tables(resources, two_users):
    alice, *_ = two_users["alice"]
    async with resources.sessionmaker() as session:
        async with session.begin():
            await act_as_user(session, alice)
            with pytest.raises(DBAPIError, match="permission denied"):
                await session.execute(text("SELECT * FROM procrastinate_jobs"))


async def test_policies_use_the_user_id_index(resources, two_users):
    alice, *_ = two_users["alice"]
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        await act_as_user(session, alice)
        plan = "\n".join(
            r[0] for r in (await session.execute(text("EXPLAIN SELECT * FROM orders"))).all()
        )
    # auth.uid() is evaluated once (an InitPlan) and the user_id index serves the filter.
    assert "ix_orders_user_id_created_at" in plan
    assert "InitPlan" in plan
