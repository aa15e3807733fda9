"""Airflow DAG `users_pipeline_health`: every 5 minutes, is the pipeline whole?

1. `job_running`: the Spark job (`pipeline jobs status`) must be running. When it is not, the
   policy `on_job_stopped` decides: `restart` (default) submits it again (`pipeline submit` is
   idempotent and resumes from the checkpoint), `fail` fails the task saying the job is stopped,
   for deployments where a stopped job is a human's decision (`pipeline jobs stop`) that
   Airflow must not overrule. With the job supervisor (`pipeline jobs status --json`, exit 0
   running, 3 degraded, 4 not submitted) a degraded job is the supervisor's to recover: its
   state is reported, not fought.
2. `nothing_lost`: `pipeline verify` reconciles PostgreSQL's audit rows, Kafka and Cassandra.
   Records still on their way are lag, not loss: verify is repeated until it passes or until
   `max_lag_secs` have gone by; then the task fails with the counts of missing records.

Policy and bound: the run's params, else the pipeline's configuration (`airflow.on_job_stopped`,
`airflow.max_lag_secs`).
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

import pipeline_cli

POLICIES = ["restart", "fail"]
# Exit codes of `pipeline jobs status --json` (the job supervisor).
RUNNING, DEGRADED, NOT_SUBMITTED = 0, 3, 4
VERIFY_PAUSE_SECS = 5


def _setting(name: str, cfg: dict):
    value = get_current_context()["params"].get(name)
    return value if value is not None else cfg["airflow"][name]


def job_state(cfg: dict) -> tuple[str, str]:
    """("running" | "degraded" | "stopped", detail) of the Spark job."""
    result = pipeline_cli.run("jobs", "status", "--json", timeout=120)
    if result.code in (RUNNING, DEGRADED, NOT_SUBMITTED) and result.stdout.lstrip().startswith(("{", "[")):
        try:
            detail = json.dumps(json.loads(result.stdout))[:500]
        except ValueError:
            detail = result.stdout.strip()[:500]
        return {RUNNING: "running", DEGRADED: "degraded", NOT_SUBMITTED: "stopped"}[result.code], detail
    # Without the supervisor: the text status; the job runs when its main query is RUNNING.
    result = pipeline_cli.run("jobs", "status", timeout=120)
    if result.code != 0:
        raise AirflowFailException(f"cannot read the Spark job's status: {result.message()}")
    query = cfg["job"]["query_name"]
    running = any(line.startswith(f"RUNNING {query} ") for line in result.stdout.splitlines())
    return ("running" if running else "stopped"), result.stdout.strip()[:500]


def missing_counts(report: str) -> dict[str, int]:
    counts = {}
    for label in ("audited, not in Kafka", "in Kafka, not in Cassandra"):
        m = re.search(rf"^{re.escape(label)}[^\n]*?\s(\d+)(\s+LOST)?$", report, re.MULTILINE)
        counts[label] = int(m.group(1)) if m else 0
    return counts


@dag(
    dag_id="users_pipeline_health",
    description="Every 5 minutes: the Spark job runs and nothing is lost (pipeline jobs status, submit, verify)",
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=15),
    tags=["pipeline"],
    params={
        "on_job_stopped": Param(None, type=["null", "string"], enum=[None, *POLICIES],
                                description="restart or fail; empty: airflow.on_job_stopped"),
        "max_lag_secs": Param(None, type=["null", "integer"], minimum=0,
                              description="seconds records may take to reach Cassandra; empty: airflow.max_lag_secs"),
    },
    default_args={"retries": 0, "execution_timeout": timedelta(minutes=12)},
)
def users_pipeline_health():
    @task
    def job_running() -> str:
        cfg = pipeline_cli.config()
        policy = _setting("on_job_stopped", cfg)
        state, detail = job_state(cfg)
        if state == "running":
            return "running"
        if state == "degraded":
            print(f"the job supervisor reports the job degraded (it recovers it; not resubmitting): {detail}")
            return "degraded"
        if policy == "fail":
            raise AirflowFailException(
                "the Spark job is stopped (`pipeline jobs stop`, or it never started): "
                "start it with `pipeline submit`, or set on_job_stopped=restart to let this DAG do it"
            )
        result = pipeline_cli.run("submit", timeout=300)
        if result.code != 0:
            raise AirflowFailException(f"the Spark job was stopped and `pipeline submit` failed: {result.message()}")
        state, detail = job_state(cfg)
        if state != "running":
            raise AirflowFailException(f"the Spark job was resubmitted but is not running: {detail}")
        return "restarted"

    @task
    def nothing_lost() -> str:
        cfg = pipeline_cli.config()
        bound = int(_setting("max_lag_secs", cfg))
        started = time.monotonic()
        while True:
            result = pipeline_cli.run("verify", timeout=300)
            if result.code == 0:
                return result.stdout.strip().splitlines()[-1]
            if "nothing was ever produced" in result.stderr:
                return "nothing produced yet"
            if not result.stdout.strip().endswith("result: LOST"):
                raise AirflowFailException(f"pipeline verify could not run: {result.message()}")
            waited = time.monotonic() - started
            if waited >= bound:
                missing = missing_counts(result.stdout)
                raise AirflowFailException(
                    f"records lost or late beyond max_lag_secs={bound}: after {waited:.0f} s, "
                    f"{missing['audited, not in Kafka']} audited record(s) are not in Kafka and "
                    f"{missing['in Kafka, not in Cassandra']} Kafka record(s) are not in Cassandra "
                    "(see the task log for `pipeline verify`'s report)"
                )
            time.sleep(VERIFY_PAUSE_SECS)

    job_running() >> nothing_lost()


users_pipeline_health()
