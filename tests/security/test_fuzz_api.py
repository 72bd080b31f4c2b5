"""schemathesis over the whole OpenAPI, against a real server of its own (uvicorn on 127.0.0.1).

Checks: no 5xx (``not_a_server_error``), every status the OpenAPI documents
(``status_code_conformance``), every response matching its schema
(``response_schema_conformance``). Every phase runs (examples, coverage, fuzzing,
stateful), a bounded number of examples an operation, from a fixed seed so a run is
repeatable; ``MODELYARD_FUZZ_EXAMPLES`` and ``MODELYARD_FUZZ_SEED`` change them.

Left out, and why:
- the two server-sent-event streams (``/logs/stream``, ``/events/stream``): they never
  end, so no response is ever complete to check. Their parameters are the same bounded
  types as ``/logs``, which is fuzzed; tests/security/test_bounds.py checks them by hand.
- with the admin's token, two operations that would spoil the run (``AS_PLAIN_USER``): ``POST
  /datasets``, where an admin may import any path on the server and a fuzzed ``source`` of
  "/" would read the whole machine, and ``DELETE /tokens/{ref}``, where a fuzzed ref of "1"
  revokes the admin's own token and every later call answers 401 (as can ``DELETE
  /users/{name}/tokens/{token_id}`` with "local" and 1). They are fuzzed with a plain
  user's token instead, for whom a server path is refused (403), only its own tokens can
  be revoked, and every ``/users`` route answers 403.

The server's executor runs no command (``fuzz_server.py``): fuzzed jobs fail at start.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import wait_for
from servers import free_port

HERE = Path(__file__).parent
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
EXAMPLES = os.environ.get("MODELYARD_FUZZ_EXAMPLES", "30")
AS_PLAIN_USER = ("create_api_v1_datasets_post", "revoke_api_v1_tokens__ref__delete",
                 "revoke_user_token_api_v1_users__name__tokens__token_id__delete")
# Fixed, so a run is repeatable (no test that fails one run in five). Checked when chosen:
# with the bounds of api_schema.JobId or the pattern of /metrics/latest removed, this seed
# finds their 500s (an unlucky one, e.g. 1, found neither in 30 examples).
SEED = os.environ.get("MODELYARD_FUZZ_SEED", "2")


class FuzzServer:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.url = f"http://127.0.0.1:{free_port()}"
        home.mkdir(parents=True)
        self.log = open(home / "server.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        env.update(MODELYARD_HOME=str(home), MODELYARD_CAPACITY="gpus=0,cpus=4,memory=8G")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "fuzz_server.py"), self.url.rsplit(":", 1)[1]],
                                     env=env, cwd=home, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._healthy, timeout=60, what="the fuzzing server")
        self.token = (home / "token").read_text().strip()

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited: {(self.home / 'server.log').read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def user_token(self, name: str) -> str:
        r = httpx.post(f"{self.url}/api/v1/users", json={"name": name, "no_isolation": True},
                       headers={"Authorization": f"Bearer {self.token}"})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    srv = FuzzServer(tmp_path_factory.mktemp("fuzz") / "home")
    yield srv
    srv.stop()


def schemathesis(server: FuzzServer, token: str, *filters: str) -> subprocess.CompletedProcess[str]:
    report = server.home / f"report-{len(filters)}"
    # One worker: with two, hypothesis builds strategies in two threads at once, and CPython 3.11 before
    # 3.11.8 (this machine's is 3.11.7) can then fail ast.parse with "SystemError: AST constructor recursion
    # depth mismatch" (python/cpython#106905), a schemathesis runtime error unrelated to our API.
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/api/v1/openapi.json",
           "--checks", CHECKS, "--max-examples", EXAMPLES, "--seed", SEED, "--workers", "1",
           "--header", f"Authorization: Bearer {token}", "--exclude-path-regex", r"/stream$",
           "--request-timeout", "30", "--no-color", "--report-dir", str(report), *filters]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=server.home,
                          env=os.environ.copy())


def _explain(out: subprocess.CompletedProcess[str], server: FuzzServer) -> str:
    log = (server.home / "server.log").read_text(errors="replace")
    return f"{out.stdout[-20000:]}\n{out.stderr[-3000:]}\n--- server log tail ---\n{log[-5000:]}"


def test_the_whole_api_answers_fuzzing_with_documented_4xx_and_no_5xx(fuzz_server: FuzzServer) -> None:
    out = schemathesis(fuzz_server, fuzz_server.token, *_each("--exclude-operation-id", AS_PLAIN_USER))
    assert out.returncode == 0, _explain(out, fuzz_server)
    doc = httpx.get(f"{fuzz_server.url}/api/v1/openapi.json").json()
    operations = [(m, p) for p, item in doc["paths"].items() for m in item]
    streams = [op for op in operations if op[1].endswith("/stream")]
    assert len(streams) == 2, streams
    # every operation was tried but the two streams and those left to the plain user
    assert _operations_tested(out.stdout) == len(operations) - len(streams) - len(AS_PLAIN_USER), out.stdout[-3000:]


def test_what_would_spoil_the_admins_run_is_fuzzed_as_a_plain_user(fuzz_server: FuzzServer) -> None:
    out = schemathesis(fuzz_server, fuzz_server.user_token("fuzzer"), *_each("--include-operation-id", AS_PLAIN_USER))
    assert out.returncode == 0, _explain(out, fuzz_server)
    assert _operations_tested(out.stdout) == len(AS_PLAIN_USER), out.stdout[-3000:]


def _each(option: str, values: tuple[str, ...]) -> list[str]:
    return [arg for value in values for arg in (option, value)]


def _operations_tested(stdout: str) -> int:
    for line in stdout.splitlines():
        if line.strip().startswith("Tested:"):
            return int(line.split(":")[1].split()[0])
    raise AssertionError(f"no 'Tested:' line in schemathesis' summary:\n{stdout[-3000:]}")
