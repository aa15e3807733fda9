"""Runs the `pipeline` binary for the DAGs of this folder: they orchestrate, the binary works.

The launcher (`pipeline cluster up`) and docker-compose give every Airflow process
PIPELINE_BIN (the binary's path) and the PIPELINE__* variables of the cluster, so a task
sees the same configuration, state folder and secrets as `pipeline` run by hand.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tomllib
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Upper bound on one invocation; the DAGs' own timeouts are tighter where it matters.
DEFAULT_TIMEOUT_SECS = 600


@dataclass
class Result:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    def message(self) -> str:
        """The binary's own explanation: its `error:` line(s), else the end of stderr/stdout."""
        errors = [line for line in self.stderr.splitlines() if line.startswith("error")]
        if errors:
            return "\n".join(errors)
        tail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-15:]
        return "\n".join(tail) or f"exit code {self.code}"


def binary() -> str:
    return os.environ.get("PIPELINE_BIN") or "pipeline"


def run(*args: str, timeout: int = DEFAULT_TIMEOUT_SECS, quiet: bool = False) -> Result:
    """Runs `pipeline ARGS`, logs its output into the task log and returns it (never raises on
    a non-zero exit; callers decide what it means)."""
    cmd = [binary(), *args]
    log.info("running %s", " ".join(cmd))
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    env["NO_COLOR"] = "1"
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except FileNotFoundError as e:
        raise RuntimeError(f"the pipeline binary {cmd[0]!r} was not found (PIPELINE_BIN is not set?): {e}") from e
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"`pipeline {' '.join(args)}` did not finish within {timeout} s") from e
    for line in [] if quiet else done.stdout.splitlines():
        log.info("%s", line)
    for line in done.stderr.splitlines():
        log.warning("%s", line)
    log.info("`pipeline %s` exited with %d", " ".join(args), done.returncode)
    return Result(list(args), done.returncode, done.stdout, done.stderr)


def config() -> dict:
    """The pipeline's effective configuration (`pipeline config show`: defaults, user file, env)."""
    result = run("config", "show", timeout=30, quiet=True)
    if result.code != 0:
        raise RuntimeError(f"`pipeline config show` failed: {result.message()}")
    return tomllib.loads(result.stdout)
