"""The embedded Prefect stack: a local server (SQLite), a `process` work pool and a worker.

Everything lives under ``<data home>/prefect`` and binds to 127.0.0.1. Server and worker
each run in their own process session, so one SIGTERM to the group stops each cleanly
(a worker started in the background by a shell script would ignore SIGINT).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from storage import paths

WORK_POOL = "speednet"
DEFAULT_PORT = 4200


# prefect.yaml's deployments on the local process pool, by name (each flow has a 'default')
LOCAL_DEPLOYMENTS = ("--name", "default", "--name", "nightly")


@dataclass(frozen=True)
class Stack:
    """One embedded Prefect stack, identified by its state folder and port."""

    home: Path
    port: int

    @classmethod
    def from_env(cls) -> "Stack":
        """The stack for $SPEEDNET_HOME (or <repo>/var) on $SPEEDNET_PREFECT_PORT (default 4200)."""
        return cls(paths.data_home(), int(os.environ.get("SPEEDNET_PREFECT_PORT", DEFAULT_PORT)))

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment in which `prefect ...` commands talk to this stack."""
        return {
            "SPEEDNET_HOME": str(self.home),
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": self.api_url,
        }

    def _pidfile(self, name: str) -> Path:
        return self.prefect_home / f"{name}.pid"

    def _log(self, name: str) -> Path:
        return self.prefect_home / f"{name}.log"

    def _prefect(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([_prefect_exe(), *args], env={**os.environ, **self.env()}, cwd=paths.REPO_ROOT,
                              capture_output=True, text=True, check=check, timeout=timeout)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return json.loads(response.read()) is True
        except OSError:
            return False

    def start(self, *, timeout_s: float = 180) -> None:
        """Start server (if not running), work pool and worker (if not running); wait until usable."""
        self.prefect_home.mkdir(parents=True, exist_ok=True)
        if not self.healthy():
            self._spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(self.port))
            deadline = time.monotonic() + timeout_s
            while not self.healthy():
                if not _alive(self._pid("server")):
                    raise RuntimeError(f"the Prefect server exited during start-up; see {self._log('server')}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Prefect server did not answer within {timeout_s:.0f} s; see {self._log('server')}")
                time.sleep(0.5)
        if self._prefect("work-pool", "inspect", WORK_POOL, check=False).returncode != 0:
            self._prefect("work-pool", "create", WORK_POOL, "--type", "process")
        if not _alive(self._pid("worker")):
            self._spawn("worker", "worker", "start", "--pool", WORK_POOL, "--type", "process", "--name", f"speednet-{self.port}")

    def deploy(self) -> str:
        """The deployments of prefect.yaml on the local `speednet` pool, from the repo root.

        Not ``--all``: the Docker and Kubernetes pools' deployments (docs/SCALE.md) are for
        servers that have those pools, and Prefect stops at the first pool it lacks.
        """
        return self._prefect("--no-prompt", "deploy", *LOCAL_DEPLOYMENTS).stdout

    def run_deployment(self, name: str, parameters: dict | None = None, *, timeout_s: float = 3600) -> subprocess.CompletedProcess:
        """`prefect deployment run NAME --watch`: blocks until the flow run ends; rc 0 means Completed."""
        args = ["deployment", "run", name, "--watch", "--watch-timeout", str(int(timeout_s))]
        for key, value in (parameters or {}).items():
            args += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
        return self._prefect(*args, check=False, timeout=timeout_s + 60)

    def stop(self, *, timeout_s: float = 20) -> None:
        """Stop worker then server: SIGTERM to each process group, SIGKILL if still there after ``timeout_s``."""
        for name in ("worker", "server"):
            pid = self._pid(name)
            if _alive(pid):
                _terminate_group(pid, timeout_s)
            self._pidfile(name).unlink(missing_ok=True)

    def status(self) -> dict:
        return {"server": self.healthy(), "worker": _alive(self._pid("worker")), "ui": self.ui_url,
                "api": self.api_url, "state": str(self.prefect_home)}

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self._log(name), "ab")
        process = subprocess.Popen([_prefect_exe(), *args], env={**os.environ, **self.env()}, cwd=paths.REPO_ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self._pidfile(name).write_text(str(process.pid))

    def _pid(self, name: str) -> int | None:
        try:
            return int(self._pidfile(name).read_text())
        except (OSError, ValueError):
            return None


def _prefect_exe() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited child not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _terminate_group(pid: int, timeout_s: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
