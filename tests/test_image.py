"""The production shape, for real: the image built from the Dockerfile and compose.yaml started with
podman-compose (PostgreSQL, Redis, an S3 server, the migrate job, 2 API replicas behind HAProxy, 2
workers), on images made on this machine (scripts/images.sh, deploy/compose.closed-network.yaml).

`make test-image` (about 10 minutes the first time on a machine, less once the base images exist);
not part of `make test`. Everything listens on loopback or on the project's own podman network."""

import asyncio
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.factories import jpeg_bytes, report_body
from tests.processes import free_port

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "intake-image-test"
REPORTS = 200
PHOTO_EVERY = 5  # one report in five carries a photo
FINAL_EVENTS = ("status_changed",)  # the pipeline's one move out of `received`


def container(service: str, number: int = 1) -> str:
    return f"{PROJECT}_{service}_{number}"


class Stack:
    """podman-compose on compose.yaml + the closed-network images + this test's few settings."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proxy_port = free_port()
        self.url = f"http://127.0.0.1:{self.proxy_port}"
        test_settings = workdir / "compose.test.yaml"
        test_settings.write_text(
            json.dumps(
                {
                    "services": {
                        # One client files every report: the per-address limit would refuse most of them (its own check
                        # is the forwarded-address test below, on sign-in).
                        "api": {
                            "deploy": {"replicas": 2},
                            "environment": {"RATE_LIMIT_INTAKE_PER_ADDRESS": "100000/minute"},
                        },
                        "worker": {"deploy": {"replicas": 2}},
                    }
                }
            )
        )
        self.files = [
            "-f",
            str(ROOT / "compose.yaml"),
            "-f",
            str(ROOT / "deploy" / "compose.closed-network.yaml"),
            "-f",
            str(test_settings),
        ]
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(ROOT / "deploy" / "podman" / "containers.conf"),
            "SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
            # Production refuses to start without its own contact-data key (never derived from SECRET_KEY).
            "PII_ENCRYPTION_KEYS": json.dumps([Fernet.generate_key().decode()]),
            "MINIO_ROOT_PASSWORD": uuid.uuid4().hex,
            "PROXY_PUBLISH": f"127.0.0.1:{self.proxy_port}",
            "MINIO_PUBLISH": f"127.0.0.1:{free_port()}",
            "PUBLIC_BASE_URL": self.url,
        }

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        run = subprocess.run(
            ["podman-compose", "-p", PROJECT, *self.files, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and run.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        return run

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        run = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and run.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        return run

    def sql(self, query: str) -> list[list[str]]:
        out = self.podman(
            "exec", container("postgres"), "psql", "-U", "intake", "-d", "intake", "-At", "-F", "\t", "-c", query
        ).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def run_in_image(self, *command: str) -> str:
        """A one-off command in the service image, as compose runs it (its user, its network, its settings)."""
        return self.compose("run", "--rm", "--no-deps", "-T", "api", *command, timeout=300).stdout

    def wait_for(self, what: str, check, timeout: float = 120, interval: float = 1) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except (AssertionError, httpx.HTTPError, subprocess.SubprocessError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.logs()}")
            time.sleep(interval)

    def logs(self) -> str:
        names = self.podman(
            "ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}", "--format", "{{.Names}}", check=False
        ).stdout.split()
        parts = []
        for name in names:
            text = self.podman("logs", "--tail", "40", name, check=False)
            parts.append(f"--- {name}\n{text.stdout[-4000:]}{text.stderr[-4000:]}")
        return "\n".join(parts)

    def exit_code(self, name: str) -> int:
        return int(self.podman("wait", name, timeout=300).stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    build = subprocess.run(
        [str(ROOT / "scripts" / "images.sh"), "--app"], cwd=ROOT, capture_output=True, text=True, timeout=1500
    )
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    stack = Stack(tmp_path_factory.mktemp("image"))
    stack.compose("down", "-v", check=False)  # what an interrupted run left behind
    try:
        yield stack
    finally:
        (stack.workdir / "containers.log").write_text(stack.logs())
        stack.compose("down", "-v", "-t", "5", check=False)
        stack.podman("network", "rm", f"{PROJECT}_default", check=False)


@pytest.fixture(scope="module")
def started(stack):
    """The compose shape started in its order (podman-compose does not wait for health or completion)."""
    stack.compose("up", "-d", "--no-build", "postgres", "redis", "minio")
    stack.wait_for(
        "PostgreSQL", lambda: stack.podman("exec", container("postgres"), "pg_isready", "-U", "intake").returncode == 0
    )
    stack.wait_for("Redis", lambda: "PONG" in stack.podman("exec", container("redis"), "redis-cli", "ping").stdout)
    stack.wait_for(
        "S3 server", lambda: stack.podman("exec", container("minio"), "mc", "ready", "local").returncode == 0
    )

    stack.compose("up", "-d", "--no-build", "minio-init", "migrate")
    assert stack.exit_code(container("minio-init")) == 0, stack.logs()
    assert stack.exit_code(container("migrate")) == 0, stack.logs()
    assert stack.sql("SELECT count(*) FROM alembic_version") == [["1"]]

    # The map first: the catalogue's routing rules name its wards, and a load checks them.
    imported = stack.run_in_image("jurisdictions", "demo")
    assert "jurisdictions:" in imported
    loaded = stack.run_in_image("catalogue", "load", "service/catalogue/catalogue.yaml")
    assert "loaded" in loaded or "already current" in loaded
    key = next(
        line.strip()
        for line in stack.run_in_image("apikey", "create", "--name", "image test").splitlines()
        if line.strip().startswith("ik_")
    )

    stack.compose("up", "-d", "--no-build")
    for number in (1, 2):
        stack.wait_for(
            f"API replica {number}",
            lambda n=number: (
                stack.podman(
                    "exec",
                    container("api", n),
                    "python",
                    "-c",
                    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')",
                ).returncode
                == 0
            ),
        )
    stack.wait_for("HAProxy", lambda: httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200)
    for number in (1, 2):
        stack.wait_for(
            f"worker {number}",
            lambda n=number: (
                "Starting worker"
                in stack.podman("logs", container("worker", n)).stderr
                + stack.podman("logs", container("worker", n)).stdout
            ),
            timeout=180,
        )
    return {"key": key}


async def file_reports(url: str, key: str, on_half) -> dict[str, dict]:
    """File REPORTS reports (every PHOTO_EVERY-th with a photo) through HAProxy, 8 at a time; `on_half` runs
    once half are in. A request that fails (its replica died under it) is sent again with its Idempotency-Key,
    as a phone would; answers by tracking code."""
    accepted: dict[str, dict] = {}
    semaphore = asyncio.Semaphore(8)
    halfway = asyncio.Event()

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def send(number: int) -> None:
            headers = {"X-API-Key": key, "Idempotency-Key": f"image-{number}"}
            body = report_body(description=f"Đèn đường hư, hẻm {number} tối om cả tuần nay")
            photo = jpeg_bytes(320, 240, ["red", "green", "blue"][number % 3]) if number % PHOTO_EVERY == 0 else None
            async with semaphore:
                for attempt in range(10):
                    try:
                        if photo:
                            answer = await client.post(
                                "/v1/reports",
                                data=body,
                                headers=headers,
                                files=[("photos", (f"{number}.jpg", photo, "image/jpeg"))],
                            )
                        else:
                            answer = await client.post("/v1/reports", json=body, headers=headers)
                    except httpx.TransportError:
                        await asyncio.sleep(1)
                        continue
                    if answer.status_code in (502, 503, 504):
                        await asyncio.sleep(1)
                        continue
                    assert answer.status_code in (200, 201), answer.text
                    created = answer.json()
                    accepted[created["tracking_code"]] = {**created, "photo": photo, "number": number}
                    break
                else:
                    raise AssertionError(f"report {number} was never accepted")
            if len(accepted) >= REPORTS // 2 and not halfway.is_set():
                halfway.set()
                await asyncio.to_thread(on_half)

        await asyncio.gather(*(send(number) for number in range(REPORTS)))
    return accepted


def test_reports_survive_a_killed_replica_and_worker_and_are_processed_once(stack, started):
    killed = []

    def kill_one_replica_and_one_worker():
        for name in (container("api", 2), container("worker", 2)):
            stack.podman("kill", name)
            killed.append(name)

    accepted = asyncio.run(file_reports(stack.url, started["key"], kill_one_replica_and_one_worker))
    assert killed == [container("api", 2), container("worker", 2)]
    assert len(accepted) == REPORTS

    def all_processed() -> bool:
        return stack.sql("SELECT count(*), count(processed_at) FROM reports") == [[str(REPORTS), str(REPORTS)]]

    stack.wait_for("every report processed", all_processed, timeout=300, interval=3)
    codes = {row[0] for row in stack.sql("SELECT tracking_code FROM reports")}
    assert codes == set(accepted)  # retries never made a second report

    # Processed exactly once: one classification and one final decision each, whoever ran it.
    for types in (("classified",), FINAL_EVENTS):
        counts = stack.sql(
            "SELECT count(*) FROM report_events WHERE type IN ({}) GROUP BY report_id".format(
                ", ".join(f"'{t}'" for t in types)
            )
        )
        assert len(counts) == REPORTS and {row[0] for row in counts} == {"1"}, types

    # Photos: processed by a worker, stored in the object store, served through HAProxy.
    with_photos = [answer for answer in accepted.values() if answer["photo"]]
    stack.wait_for(
        "every photo processed",
        lambda: stack.sql("SELECT count(*), count(processed_at) FROM photos") == [[str(len(with_photos))] * 2],
        timeout=120,
    )
    for answer in with_photos:
        view = httpx.get(
            f"{stack.url}/v1/reports/{answer['tracking_code']}",
            headers={"X-Citizen-Token": answer["citizen_token"]},
            timeout=30,
        )
        assert view.status_code == 200, view.text
        (photo,) = view.json()["photos"]
        assert photo["ready"] and photo["url"].startswith(stack.url)
        served = httpx.get(photo["url"], timeout=30)
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    listing = stack.podman(
        "exec",
        container("minio"),
        "python",
        "-c",
        (
            "import boto3; s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:9000', region_name='us-east-1',"
            " aws_access_key_id='x', aws_secret_access_key='x');"
            " print('\\n'.join(o['Key'] for p in s3.get_paginator('list_objects_v2').paginate(Bucket='intake-photos')"
            " for o in p.get('Contents', [])))"
        ),
    )
    stored = set(listing.stdout.split())
    recorded = {key for row in stack.sql("SELECT original_key, public_key, thumbnail_key FROM photos") for key in row}
    assert len(recorded) == 3 * len(with_photos)  # an original, its public copy and its thumbnail each
    assert recorded <= stored
    # A replica killed in the middle of an upload leaves the original it had stored and not yet committed
    # (the phone's retry stores it again): at most one per request then in flight, and never served.
    orphans = stored - recorded
    assert len(orphans) <= 8 and all(key.startswith("originals/") for key in orphans), orphans

    # The services ran as the image's own user, and nothing tripped over a folder it cannot write.
    assert stack.podman("exec", container("worker"), "id", "-un").stdout.strip() == "intake"
    worker_logs = "".join(stack.podman("logs", container("worker", n), check=False).stderr for n in (1, 2))
    assert "PermissionError" not in worker_logs and "KeyError" not in worker_logs


def test_a_spoofed_forwarded_for_does_not_escape_the_per_address_limit(stack, started):
    # Failed sign-ins count per address: with a new made-up X-Forwarded-For (and a new user name) on each
    # try, a client whose header were believed would never be limited.
    answers = []
    for attempt in range(40):
        spoofed = f"203.0.113.{attempt + 1}"
        answer = httpx.post(
            f"{stack.url}/v1/auth/token",
            timeout=30,
            headers={"X-Forwarded-For": spoofed, "Forwarded": f"for={spoofed}"},
            data={"username": f"nobody-{attempt}", "password": "guess"},
        )
        answers.append(answer.status_code)
        if answer.status_code == 429:
            break
    assert answers[-1] == 429, answers
    assert set(answers[:-1]) == {401}
