"""The real PostgreSQL the harness starts: loopback only, password authentication, working SQL."""

from __future__ import annotations

import psycopg2
import pytest
from support.postgres import PostgresServer


def test_postgres_accepts_a_connection_and_round_trips_a_row(postgres: PostgresServer) -> None:
    connection = postgres.connect()
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE harness_probe (id serial PRIMARY KEY, note text)")
            cursor.execute("INSERT INTO harness_probe (note) VALUES (%s) RETURNING id", ("hi",))
            (row_id,) = cursor.fetchone()
            cursor.execute(
                "SELECT note, current_database() FROM harness_probe WHERE id = %s", (row_id,)
            )
            assert cursor.fetchone() == ("hi", postgres.database)
            cursor.execute("DROP TABLE harness_probe")
    finally:
        connection.close()


def test_postgres_listens_on_loopback_only(postgres: PostgresServer) -> None:
    connection = postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW listen_addresses")
            assert cursor.fetchone() == ("127.0.0.1",)
    finally:
        connection.close()


def test_postgres_rejects_a_wrong_password(postgres: PostgresServer) -> None:
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=postgres.host,
            port=postgres.port,
            user=postgres.user,
            password="not-" + postgres.password,
            dbname=postgres.database,
            connect_timeout=10,
        )
