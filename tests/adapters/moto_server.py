"""moto's AWS server as a subprocess on loopback, for the aws-iam adapter tests.

moto answers every request without checking it until IAM authentication is switched on (``enable_auth``, moto's
``/moto-api/reset-auth``); from then on each request must be signed by a known access key and is allowed only
by that user's IAM policies (actions and resources; moto evaluates no policy conditions but ``StringEquals``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import requests

from bot.devtools.ports import free_port


@contextmanager
def offline_aws_env() -> Iterator[None]:
    """No AWS settings from the machine: fake region, no profile, no config files, no instance metadata."""
    saved = dict(os.environ)
    for name in [name for name in os.environ if name.startswith(("AWS_", "BOTO_"))]:
        del os.environ[name]
    os.environ.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class MotoServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._http = requests.Session()
        self._http.trust_env = False  # no proxy between us and loopback

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, within: float = 60) -> None:  # returns once it answers
        self._log = (self.workdir / "moto.log").open("wb")
        env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self._process = subprocess.Popen(command, cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        give_up = time.monotonic() + within
        while time.monotonic() < give_up:
            if self._process.poll() is not None:
                break
            try:
                self._http.get(f"{self.url}/moto-api/data.json", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        log = (self.workdir / "moto.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"moto server did not start on port {self.port}:\n{log}")

    def enable_auth(self) -> None:
        """From now on, requests are authenticated and authorised against IAM."""
        answer = self._http.post(
            f"{self.url}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}, timeout=5
        )
        answer.raise_for_status()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._http.close()
