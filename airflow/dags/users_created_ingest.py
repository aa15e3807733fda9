"""Airflow DAG `users_created_ingest`: every minute, fetch users and stream them to Kafka.

One task runs `pipeline produce --source S --count N`: users are fetched (RandomUser API or the
offline synthetic source), audited in PostgreSQL's outbox and published to Kafka. The Spark job
(or the local engine) takes them on to Cassandra.

Where the source and count come from, first match wins:
  1. the run's params (Trigger DAG w/ config in the UI, `airflow dags test -c '{"count": 200}'`);
  2. the Airflow Variables `users_created_ingest_source` / `users_created_ingest_count`
     (Admin > Variables: a per-deployment choice, e.g. `synthetic` where the API is unreachable);
  3. the pipeline's configuration: `producer.source` and `producer.batch_size`.

A failed fetch fails the task with the producer's own message; the task is retried with
exponential backoff. Catch-up is off and one run is active at a time: a slow API never piles
up runs.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, Variable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowException

import pipeline_cli

SOURCES = ["synthetic", "randomuser"]


def _resolve(params: dict, cfg: dict) -> tuple[str, int]:
    source = params.get("source") or Variable.get("users_created_ingest_source", default=None)
    source = source or cfg["producer"]["source"]
    count = params.get("count") or Variable.get("users_created_ingest_count", default=None)
    count = int(count or cfg["producer"]["batch_size"])
    if source not in SOURCES:
        raise AirflowException(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    if count < 1:
        raise AirflowException(f"count must be at least 1, got {count}")
    return source, count


@dag(
    dag_id="users_created_ingest",
    description="Every minute: users -> PostgreSQL audit outbox -> Kafka (pipeline produce)",
    schedule="* * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=10),
    tags=["pipeline"],
    params={
        "source": Param(None, type=["null", "string"], enum=[None, *SOURCES],
                        description="synthetic or randomuser; empty: Variable, else producer.source"),
        "count": Param(None, type=["null", "integer"], minimum=1, maximum=1_000_000,
                       description="users to fetch; empty: Variable, else producer.batch_size"),
    },
    default_args={
        "retries": 3,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(minutes=8),
    },
)
def users_created_ingest():
    @task
    def produce() -> dict:
        context = get_current_context()
        source, count = _resolve(context["params"], pipeline_cli.config())
        result = pipeline_cli.run("produce", "--source", source, "--count", str(count), "--quiet")
        if result.code != 0:
            raise AirflowException(f"pipeline produce (source {source}, count {count}) failed: {result.message()}")
        summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        return {"source": source, "count": count, "summary": summary}

    produce()


users_created_ingest()
