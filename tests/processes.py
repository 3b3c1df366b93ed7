"""Real servers for the tests that need processes of their own: Redis, an S3 API (moto), PgBouncer,
and the service's own `intake serve` / `intake worker` processes. Each binds a free loopback port."""

import json
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
INTAKE = str(BIN / "intake")


# Ports for the servers tests start, handed out below Linux's ephemeral range (32768-60999 by default), in a
# slice of their own per pytest-xdist worker. A port the kernel picked (bind to port 0) is free only until
# the server binds it: meanwhile any outgoing connection (to PostgreSQL, Redis, a webhook receiver) may take
# it as its local port, and under `pytest -n` another worker may be handed the same one. Outside that range
# and each worker in its own slice, neither can happen; a port is still checked free before it is handed out
# (another pytest session may run on the machine too: the slice is entered at a random place).
_PORTS_FIRST, _PORTS_PER_WORKER, _PORTS_SLICES = 20000, 500, 25  # 20000-32499
_ports_handed_out: set[int] = set()


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...; unset when not under xdist
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    first = _PORTS_FIRST + (index % _PORTS_SLICES) * _PORTS_PER_WORKER
    return range(first, first + _PORTS_PER_WORKER)


def free_port() -> int:
    ports = _port_slice()
    if len(_ports_handed_out.intersection(ports)) > len(ports) // 2:
        _ports_handed_out.clear()  # long since closed: hand them out again
    start = random.randrange(len(ports))
    for offset in range(len(ports)):
        port = ports[(start + offset) % len(ports)]
        if port in _ports_handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def wait_for_port(
    port: int, process: subprocess.Popen | None = None, timeout: float = 20, what: str = "server"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def stop(process: subprocess.Popen | None, timeout: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RedisServer:
    """A Redis of our own, so a test can stop it without disturbing anything else."""

    def __init__(self, workdir: Path):
        self.port, self.workdir, self.process = free_port(), workdir, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process, what="redis-server")

    def stop(self) -> None:
        stop(self.process)
        self.process = None


class MotoServer:
    """moto's S3-compatible API server (from PyPI) on loopback: a real HTTP S3 endpoint, not a mock in-process."""

    def __init__(self, workdir: Path):
        self.port, self.workdir, self.process = free_port(), workdir, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.workdir / "moto.log", "w")
        self.process = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, self.process, timeout=30, what="moto_server")

    def stop(self) -> None:
        stop(self.process)
        self.process = None


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(path)), None
    )


class PgBouncer:
    """PgBouncer in transaction mode in front of the test PostgreSQL (trust auth, as the tests use)."""

    def __init__(self, *, host: str, port: int, pool_size: int = 10):
        self.port, self.process = free_port(), None
        self.host, self.server_port, self.pool_size = host, port, pool_size
        # PgBouncer refuses to run as root: as root it runs as an unprivileged user, from a folder that user owns.
        self.user = _unprivileged_user() if os.geteuid() == 0 else None
        self.workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        if self.user:
            os.chown(self.workdir, self.user.pw_uid, self.user.pw_gid)

    def start(self) -> None:
        (self.workdir / "userlist.txt").write_text('"postgres" ""\n')
        config = self.workdir / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={self.host} port={self.server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.workdir}\n"
            "auth_type = trust\n"
            f"auth_file = {self.workdir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            # Wipe session state after every transaction: code that relied on it (SET, named prepared
            # statements, session advisory locks, temp tables) fails here at once, not under load.
            "server_reset_query = DISCARD ALL\nserver_reset_query_always = 1\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n"
            f"pidfile = {self.workdir / 'pgbouncer.pid'}\n"
        )
        command = [pgbouncer_binary(), *(["-u", self.user.pw_name] if self.user else []), str(config)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, what="pgbouncer")

    def log_text(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        stop(self.process)
        self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _unprivileged_user():
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user to run pgbouncer as")


class IntakeProcesses:
    """`intake serve` and `intake worker` processes sharing one environment; logs in `workdir`."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir, self.env = workdir, env
        self.apis: list[tuple[subprocess.Popen, int]] = []
        self.workers: list[subprocess.Popen] = []

    def _log(self, name: str):
        return open(self.workdir / f"{name}.log", "w")

    def start_api(self) -> str:
        port = free_port()
        process = subprocess.Popen(
            [INTAKE, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=self.env,
            stdout=self._log(f"api-{len(self.apis)}"),
            stderr=subprocess.STDOUT,
        )
        self.apis.append((process, port))
        wait_for_port(port, process, timeout=60, what="intake serve")
        return f"http://127.0.0.1:{port}"

    def start_worker(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [INTAKE, "worker"], env=self.env, stdout=self._log(f"worker-{len(self.workers)}"), stderr=subprocess.STDOUT
        )
        self.workers.append(process)
        return process

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.workdir.glob("*.log")))

    def stop_all(self) -> None:
        for process in [p for p, _ in self.apis] + self.workers:
            stop(process)


def settings_environment(settings) -> dict[str, str]:
    """Every setting as the environment variable Settings reads, so a subprocess sees exactly these."""
    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
            env[name.upper()] = "true" if value else "false"
        elif isinstance(value, list | tuple | dict):
            env[name.upper()] = json.dumps(value, default=str)
        else:
            env[name.upper()] = str(value)
    return env


@contextmanager
def live_api(settings, workdir: Path, *, timeout: float = 60, **overrides) -> Iterator[str]:
    """A real `intake serve` on a free loopback port, configured through the environment from `settings`
    (plus `overrides`); yields its base URL once /healthz answers. Its log is `workdir/api.log`."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    configured = settings.model_copy(update={"public_base_url": base, **overrides})
    env = {**os.environ, **settings_environment(configured)}
    log_path = workdir / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [INTAKE, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"intake serve did not start: {log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        yield base
    finally:
        stop(process)


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.path.exists(p)), None)


class HAProxy:
    """Debian's HAProxy on loopback, running deploy/haproxy.cfg as shipped except where it listens and
    which servers it sends to (compose finds the replicas through the container DNS; here they are given)."""

    def __init__(self, workdir: Path, backends: list[str]):
        self.port, self.workdir, self.backends, self.process = free_port(), workdir, backends, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        shipped = (Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg").read_text()
        lines, skipping = [], False
        for line in shipped.splitlines():
            stripped = line.strip()
            if stripped.startswith("resolvers "):
                skipping = True  # the container DNS section: not here
                continue
            if skipping and line[:1] in (" ", "\t"):
                continue
            skipping = False
            if stripped.startswith("bind "):
                line = f"    bind 127.0.0.1:{self.port}"
            elif stripped.startswith("server-template "):
                line = "\n".join(
                    f"    server api{number} {backend.removeprefix('http://')} check inter 1s"
                    for number, backend in enumerate(self.backends)
                )
            lines.append(line)
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        config = self.workdir / "haproxy.cfg"
        config.write_text(self.config_text())
        log = open(self.workdir / "haproxy.log", "w")
        self.process = subprocess.Popen(
            [haproxy_binary(), "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, self.process, what="haproxy")

    def stop(self) -> None:
        stop(self.process)
        self.process = None
