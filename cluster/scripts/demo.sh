#!/usr/bin/env bash
# make demo: the whole pipeline on this machine, from nothing.
#   services up -> DEMO_COUNT synthetic users produced (audit outbox -> Kafka) -> Spark job
#   submitted -> wait until every user is a row in Cassandra -> rows and UIs shown.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
COUNT=${DEMO_COUNT:-3000}
CARGO=${CARGO:-cargo}
pipeline() { "$CARGO" run --quiet --bin pipeline -- "$@"; }
step() { printf '\n\033[1;36m▶ %s\033[0m\n' "$*"; }
export RUST_LOG=${RUST_LOG:-warn}

step "1/5 services (Kafka, registry, PostgreSQL, Cassandra, Spark master/worker/Connect, Airflow)"
make --no-print-directory up

step "2/5 producing $COUNT synthetic users: PostgreSQL audit outbox -> Kafka users_created"
pipeline produce --source synthetic --count "$COUNT"

step "3/5 submitting the Spark Structured Streaming job through Spark Connect"
pipeline submit

step "4/5 waiting until every audited user is a row in Cassandra"
t0=$SECONDS
until pipeline verify >/tmp/pipeline-demo-verify.txt 2>&1; do
  if (( SECONDS - t0 > 300 )); then
    cat /tmp/pipeline-demo-verify.txt
    echo "the job did not catch up within 300 s; see 'make jobs-status' and 'make logs SERVICE=spark-connect'" >&2
    exit 1
  fi
  printf '\r  %3d s  ' $((SECONDS - t0))
  pipeline jobs status 2>/dev/null | grep -m1 "last batch" | cut -c1-100 || true
  sleep 3
done
echo
grep -E "audited in PostgreSQL|Kafka records|dead-letter records|rows in Cassandra|result" /tmp/pipeline-demo-verify.txt

step "5/5 rows in spark_streams.created_users"
pipeline sample --limit 8
# Airflow runs when `[airflow] enabled` (the default): its UI and where the password is.
airflow_ui=""
if pipeline config show | grep -A3 '^\[airflow\]' | grep -q '^enabled = true'; then
  state=$(pipeline config show | sed -nE 's/^state_dir = "(.*)"/\1/p' | head -1)
  port=$(pipeline config show | grep -A3 '^\[airflow\]' | sed -nE 's/^port = ([0-9]+)/\1/p')
  airflow_ui="  Airflow UI             http://127.0.0.1:${port:-8082}  (user admin, password in ${state:-.state}/secrets/airflow-passwords.json)"
fi
cat <<MSG

  Spark master UI        http://127.0.0.1:8083
  Spark worker UI        http://127.0.0.1:8084
  job (application) UI   http://127.0.0.1:4040/StreamingQuery/
  schema registry        http://127.0.0.1:8081/apis/ccompat/v7/subjects
$airflow_ui

  The job keeps running: 'make produce COUNT=500' adds users, 'make follow' shows batches,
  'make jobs-stop' stops it, 'make down' stops everything. In Airflow, unpause
  users_created_ingest (every minute) and users_pipeline_health (every 5 minutes).
MSG
