"""A notebook console on the Ray executor (jobs/console.py): a real JupyterLab started by a supervisor in a
Ray actor on a real local cluster, reached only through the server's proxy at its node's address, and
refused while another uid listens on its port there (the check asked of the attempt's actor).

One cluster, one server (a real process, MODELYARD_EXECUTOR=ray, SQLite and file artifacts: the nodes
share this machine's disk) and one console for the module.
"""
from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from test_console_access import squat
from test_notebook_console import ENDED, execute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import wait_for
from raycluster import RayCluster, ray_cluster
from servers import ServerProcess, reap_supervisors, ui_sign_in

from modelyard.db import consoles as store_consoles
from modelyard.db.engine import Database
from modelyard.jobs import console
from modelyard.services import consoles


@pytest.fixture(scope="module")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray-nodes")


@pytest.fixture(scope="module")
def cluster(node_home: Path) -> Iterator[RayCluster]:
    with ray_cluster({"MODELYARD_HOME": str(node_home)}, gpu_node=False) as c:
        yield c
    reap_supervisors(node_home)


@pytest.fixture(scope="module")
def server(cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"MODELYARD_EXECUTOR": "ray", "MODELYARD_RAY_ADDRESS": cluster.address, "MODELYARD_STOP_GRACE": "2"}
    srv = ServerProcess(tmp_path_factory.mktemp("ray-console") / "home", env=env).start(timeout=60)
    yield srv
    srv.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def lab(server: ServerProcess) -> Iterator[dict[str, Any]]:
    # a job's own env cannot choose where its console listens: the platform's address wins
    spec = {"name": "ray-lab", "env": {console.HOST_VAR: "0.0.0.0"}}
    with server.client() as c:
        r = c.post("/consoles", json={"spec": spec, "idle_timeout": "10m"})
        assert r.status_code == 201, r.text
        job = r.json()

        def ready() -> bool:
            status = c.get(f"/jobs/{job['id']}/console").json()
            assert status["state"] not in ENDED, c.get(f"/jobs/{job['id']}").json()["message"]
            return status["ready"]

        wait_for(ready, timeout=60, interval=0.2, what=f"console job {job['id']} on Ray to answer")
        yield job
        c.post(f"/jobs/{job['id']}/stop")
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] in ENDED, timeout=30, what="the console to stop")


@pytest.fixture(scope="module")
def web(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert ui_sign_in(c, server.token).status_code in (200, 303)
        yield c


def console_port(server: ServerProcess, job_id: int) -> int:
    db = Database(f"sqlite:///{server.home / 'modelyard.db'}")
    try:
        found = store_consoles.running_attempt(db, job_id)
    finally:
        db.dispose()
    assert found is not None
    return console.console_port(found[0].id, found[1])


def listening(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_the_console_answers_through_the_proxy_from_its_nodes_address(
        lab: dict[str, Any], web: httpx.Client, server: ServerProcess, cluster: RayCluster) -> None:
    base = f"/ui/jobs/{lab['id']}/lab"
    status = web.get(f"{base}/api/status")
    assert status.status_code == 200 and status.json()["kernels"] == 0
    # on the node's address as Ray's node table has it: not the job's 0.0.0.0, not loopback
    addresses = listening(console_port(server, lab["id"]))
    assert addresses and addresses <= {n.node_ip_address for n in cluster.cluster.list_all_nodes()}
    assert not addresses & {"0.0.0.0", "::", "127.0.0.1"}
    kernel = web.post(f"{base}/api/kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    cookie = "; ".join(f"{k}={v}" for k, v in web.cookies.items())
    url = f"ws://127.0.0.1:{server.port}{base}/api/kernels/{kernel.json()['id']}/channels?session_id={uuid.uuid4().hex}"
    with connect(url, additional_headers={"Cookie": cookie}, open_timeout=20) as ws:
        assert execute(ws, "1+1") == "2"
    web.delete(f"{base}/api/kernels/{kernel.json()['id']}")


def test_another_uids_listener_on_the_port_is_refused_on_the_ray_path(
        lab: dict[str, Any], web: httpx.Client, server: ServerProcess) -> None:
    """The server cannot read the node's /proc; the attempt's actor can, and the proxy sends nothing
    (neither the owner's requests nor the console token) while another uid listens on the port there."""
    port = console_port(server, lab["id"])
    taken = listening(port)
    free = "127.0.0.2" if "127.0.0.1" in taken else "127.0.0.1"  # the same port, an address JupyterLab left free
    pid, lines = squat(port, host=free)
    base = f"/ui/jobs/{lab['id']}/lab"
    try:
        assert lines.readline().strip() == "listening"
        r = web.get(f"{base}/api/status")
        assert r.status_code == 409 and "another user" in r.json()["error"]["message"], r.text
        with server.client() as c:
            assert c.get(f"/jobs/{lab['id']}/console").json()["ready"] is False
        cookie = "; ".join(f"{k}={v}" for k, v in web.cookies.items())
        with pytest.raises(InvalidStatus) as denied:
            with connect(f"ws://127.0.0.1:{server.port}{base}/api/kernels/k/channels",
                         additional_headers={"Cookie": cookie}, open_timeout=20):
                pass
        assert denied.value.response.status_code == 409
        with socket.create_connection((free, port)) as sentinel:
            sentinel.sendall(b"sentinel\n")
        assert lines.readline().strip() == "sentinel"  # the first connection it ever got
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        lines.close()
    assert web.get(f"{base}/api/status").status_code == 200  # its own listener alone again: through


def test_a_nodes_ipv6_address_is_bracketed_in_the_proxys_urls() -> None:
    up = consoles.Upstream(job_id=1, port=20001, token="t", host="fd00::2")
    assert up.http_url("/ui/jobs/1/lab/api/status", "a=1") == "http://[fd00::2]:20001/ui/jobs/1/lab/api/status?a=1"
    assert up.ws_url("/x") == "ws://[fd00::2]:20001/x"
