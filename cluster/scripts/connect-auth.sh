#!/usr/bin/env bash
# Builds the Spark Connect token interceptor (cluster/java/) into
#   $ARTIFACTS/spark/auth/pipeline-connect-auth.jar
# with the JDK's javac, against the jars Spark itself runs with: the connector jars (the
# spark-connect jar holds the shaded gRPC, org.sparkproject.connect.grpc) and pyspark's jars
# (slf4j). Called by deps.sh (`make deps`) after both are in place; a stamp of the sources and
# the javac version skips an unchanged build. Runs alone too: cluster/scripts/connect-auth.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARTIFACTS="${PIPELINE__CLUSTER__ARTIFACTS_DIR:-$ROOT/.state/artifacts}"
case "$ARTIFACTS" in /*) ;; *) ARTIFACTS="$ROOT/$ARTIFACTS" ;; esac
SRC="$ROOT/cluster/java"
OUT="$ARTIFACTS/spark/auth"
JAR="$OUT/pipeline-connect-auth.jar"

log() { printf '\033[1m[deps]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[deps] %s\033[0m\n' "$*" >&2; exit 1; }

JAVAC=javac JARTOOL=jar
if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/javac" ]; then JAVAC="$JAVA_HOME/bin/javac" JARTOOL="$JAVA_HOME/bin/jar"; fi
command -v "$JAVAC" >/dev/null || die "javac is missing: install a JDK (apt-get install openjdk-17-jdk-headless), then run 'make deps' again"
compgen -G "$ARTIFACTS/spark/jars/spark-connect_*.jar" >/dev/null || die "no spark-connect jar in $ARTIFACTS/spark/jars (run 'make deps')"
[ -d "$ARTIFACTS/spark/py/pyspark/jars" ] || die "no pyspark jars in $ARTIFACTS/spark/py (run 'make deps')"

mapfile -t sources < <(find "$SRC" -name '*.java' | sort)
stamp="$( (cat "${sources[@]}"; "$JAVAC" -version 2>&1) | sha256sum | cut -d' ' -f1)"
if [ -f "$JAR" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ]; then
  log "connect-auth: cached"
  exit 0
fi
log "connect-auth: compiling the token interceptor"
classes="$(mktemp -d)"
trap 'rm -rf "$classes"' EXIT
# Java 8 bytecode: runs on every JVM Spark 3.5 supports.
"$JAVAC" --release 8 -Xlint:all,-options,-path -Werror -d "$classes" \
  -cp "$ARTIFACTS/spark/jars/*:$ARTIFACTS/spark/py/pyspark/jars/*" "${sources[@]}"
mkdir -p "$OUT"
"$JARTOOL" cf "$JAR.tmp" -C "$classes" .
mv "$JAR.tmp" "$JAR"
echo "$stamp" > "$OUT/.stamp"
log "connect-auth: $JAR"
