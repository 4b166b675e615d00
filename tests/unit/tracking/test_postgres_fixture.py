"""The test PostgreSQL server (tests/pg.py) answers on 127.0.0.1 and holds an MLflow store."""

from __future__ import annotations

import psycopg
import pytest
from mlflow.tracking import MlflowClient

from tests.pg import PostgresServer


@pytest.mark.slow
def test_postgres_fixture_serves_sql_and_an_mlflow_store(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("show listen_addresses").fetchone() == ("127.0.0.1",)
    client = MlflowClient(url)
    experiment = client.create_experiment("pg-check")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "a", "1")
    assert client.get_run(run.info.run_id).data.params == {"a": "1"}
