#!/usr/bin/env bash
# Installs what the pipeline needs on this machine. Idempotent: a second run downloads nothing.
#
#   system packages (apt, when root): protobuf-compiler (spark-connect-rs build), postgresql,
#                                     a C toolchain for librdkafka, Java 17, Maven, Python pip,
#                                     chromium-headless-shell (the dashboard's browser tests)
#   Maven artifacts (one manifest per service under cluster/artifacts/):
#       kafka, cassandra, spark connector jars  -> $ARTIFACTS/<service>/...
#       apicurio registry (Quarkus app tarball) -> $ARTIFACTS/apicurio
#   PyPI: pyspark==3.5.9 as SPARK_HOME      -> $ARTIFACTS/spark/py
#   javac: the Spark Connect token interceptor (cluster/java) -> $ARTIFACTS/spark/auth
#         apache-airflow[postgres]==3.3.2 in a virtualenv (uv, Python 3.11, pinned by
#         airflow/constraints.txt)      -> $ARTIFACTS/airflow/venv
#   apt: chromium-headless-shell (the browser test of the Airflow UI)
#
# ARTIFACTS defaults to .state/artifacts; PIPELINE__CLUSTER__ARTIFACTS_DIR overrides it (the same
# variable the launcher reads), so several clones can share one download.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARTIFACTS="${PIPELINE__CLUSTER__ARTIFACTS_DIR:-$ROOT/.state/artifacts}"
case "$ARTIFACTS" in /*) ;; *) ARTIFACTS="$ROOT/$ARTIFACTS" ;; esac
PYSPARK_VERSION=3.5.9

log() { printf '\033[1m[deps]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[deps] %s\033[0m\n' "$*" >&2; exit 1; }

# --- system packages -------------------------------------------------------------------------
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
command -v cc >/dev/null && command -v make >/dev/null && command -v perl >/dev/null || missing+=(build-essential perl)
command -v java >/dev/null && command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
# The dashboard's and the Airflow UI's browser tests drive Debian's headless Chromium.
command -v chromium-headless-shell >/dev/null || missing+=(chromium-headless-shell)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    die "missing system packages: ${missing[*]}
       On Debian/Ubuntu: sudo apt-get install ${missing[*]}
       Elsewhere: install protoc, PostgreSQL 15+ server binaries, a C compiler with make and perl,
       Java 17, Maven 3 and Python 3 with pip, then run 'make deps' again."
  fi
fi
command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (https://rustup.rs), then run 'make deps' again"
java_major=$(java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -1)
[ "${java_major:-0}" -ge 17 ] || die "Java 17 or newer is required (found: ${java_major:-none}); set JAVA_HOME or install openjdk-17"

# --- Maven artifacts -------------------------------------------------------------------------
# Each manifest is materialised once; a stamp holding the manifest's hash skips unchanged ones.
stamp_ok() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$(sha256sum "$2" | cut -d' ' -f1)" ]; }
stamp_set() { sha256sum "$2" | cut -d' ' -f1 > "$1/.stamp"; }

maven_copy() { # service, output dir
  local svc=$1 out=$2 pom="$ROOT/cluster/artifacts/$1/pom.xml"
  if stamp_ok "$out" "$pom"; then log "$svc: cached"; return; fi
  log "$svc: fetching jars from Maven Central"
  rm -rf "$out"; mkdir -p "$out"
  mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$out"
  stamp_set "$out" "$pom"
}
maven_copy kafka "$ARTIFACTS/kafka/lib"
maven_copy cassandra "$ARTIFACTS/cassandra/lib"
maven_copy spark "$ARTIFACTS/spark/jars"

apicurio="$ARTIFACTS/apicurio"
pom="$ROOT/cluster/artifacts/apicurio/pom.xml"
if stamp_ok "$apicurio" "$pom" && [ -f "$apicurio/quarkus-run.jar" ]; then
  log "apicurio: cached"
else
  log "apicurio: fetching the registry from Maven Central"
  rm -rf "$apicurio"; mkdir -p "$apicurio"
  mvn -B -q -f "$pom" dependency:unpack -Dapicurio.outputDirectory="$apicurio"
  stamp_set "$apicurio" "$pom"
fi

# --- PyPI: pyspark as SPARK_HOME -------------------------------------------------------------
py="$ARTIFACTS/spark/py"
if [ -x "$py/pyspark/bin/spark-class" ] && [ "$(cat "$py/.version" 2>/dev/null)" = "$PYSPARK_VERSION" ]; then
  log "pyspark $PYSPARK_VERSION: cached"
else
  log "pyspark $PYSPARK_VERSION: installing from PyPI"
  rm -rf "$py"; mkdir -p "$py"
  python3 -m pip install -q --no-deps --target "$py" "pyspark==$PYSPARK_VERSION"
  chmod +x "$py"/pyspark/bin/* || true
  echo "$PYSPARK_VERSION" > "$py/.version"
fi
# --- the Spark Connect token interceptor, compiled against the jars above ------------------------
"$ROOT/cluster/scripts/connect-auth.sh"

# --- PyPI: Airflow in its own virtualenv ----------------------------------------------------
# uv (from PyPI) installs in seconds what pip takes a minute for. Python 3.11 is what Airflow 3.3
# is checked with here; another 3.10-3.13 works too and is reported.
AIRFLOW_VERSION=3.3.2
constraints="$ROOT/airflow/constraints.txt"
venv="$ARTIFACTS/airflow/venv"
if [ -x "$venv/bin/airflow" ] && stamp_ok "$ARTIFACTS/airflow" "$constraints"; then
  log "airflow $AIRFLOW_VERSION: cached"
else
  t0=$SECONDS
  python3 -m uv --version >/dev/null 2>&1 || command -v uv >/dev/null \
    || python3 -m pip install -q --user uv 2>/dev/null || python3 -m pip install -q uv
  uv() { if command -v uv >/dev/null; then command uv "$@"; else python3 -m uv "$@"; fi; }
  py=$(command -v python3.11 || command -v python3)
  log "airflow $AIRFLOW_VERSION: installing into $venv with uv ($("$py" --version))"
  rm -rf "$venv"; mkdir -p "$ARTIFACTS/airflow"
  uv venv -q -p "$py" "$venv"
  VIRTUAL_ENV="$venv" uv pip install -q "apache-airflow[postgres]==$AIRFLOW_VERSION" -c "$constraints"
  stamp_set "$ARTIFACTS/airflow" "$constraints"
  log "airflow $AIRFLOW_VERSION: installed in $((SECONDS - t0)) s"
fi
log "ready: artifacts in $ARTIFACTS"
