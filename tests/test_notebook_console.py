"""Notebook consoles end to end (README "Notebook consoles"): a real JupyterLab as a job of a real server,
reached only through the server's proxy: HTTP, a kernel's websocket running ``1+1``, the CLI and
``modelyard.submit`` from a cell with the console's own MODELYARD_URL and MODELYARD_TOKEN, a browser following the job page's link and
running a cell, and the idle timeout ending the job with its notebooks in its outputs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browser import ARTIFACTS, browser, playwright, server, sign_in  # noqa: F401 (fixtures)
from playwright.sync_api import Browser, expect
from websockets.sync.client import connect

from conftest import wait_for
from servers import ServerProcess, ui_sign_in

ENDED = ("succeeded", "failed", "stopped", "timed_out", "lost")


def start_console(server: ServerProcess, idle_timeout: str, **spec: Any) -> dict[str, Any]:
    with server.client() as c:
        r = c.post("/consoles", json={"spec": spec, "idle_timeout": idle_timeout})
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["console"] == {"idle_timeout": pytest.approx(_seconds(idle_timeout))}

        def ready() -> bool:
            status = c.get(f"/jobs/{job['id']}/console").json()
            assert status["state"] not in ENDED, c.get(f"/jobs/{job['id']}").json()["message"]
            return status["ready"]

        wait_for(ready, timeout=60, interval=0.2, what=f"console job {job['id']} to answer")
    return job


def _seconds(text: str) -> float:
    return float(text[:-1]) * {"s": 1, "m": 60}[text[-1]]


@pytest.fixture(scope="module")
def lab(server: ServerProcess) -> Iterator[dict[str, Any]]:  # noqa: F811
    job = start_console(server, "10m", name="lab")
    yield job
    with server.client() as c:
        c.post(f"/jobs/{job['id']}/stop")


@pytest.fixture
def web(server: ServerProcess) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert ui_sign_in(c, server.token).status_code in (200, 303)
        yield c


def test_jupyterlab_answers_through_the_proxy(lab: dict[str, Any], web: httpx.Client) -> None:
    base = f"/ui/jobs/{lab['id']}/lab"
    status = web.get(f"{base}/api/status")
    assert status.status_code == 200 and status.json()["kernels"] == 0
    page = web.get(f"{base}/lab")
    assert page.status_code == 200 and "JupyterLab" in page.text
    assert "script-src 'self'" not in page.headers.get("content-security-policy", "")  # not the UI's policy
    assert web.get(f"/ui/jobs/{lab['id']}").text.count(f'href="{base}/lab"') == 1  # the job page's link
    with httpx.Client(base_url=web.base_url) as stranger:
        assert stranger.get(f"{base}/api/status", follow_redirects=False).status_code == 303  # sign in first


def test_a_kernel_runs_over_the_proxied_websocket(lab: dict[str, Any], web: httpx.Client, server: ServerProcess) -> None:  # noqa: F811
    base = f"/ui/jobs/{lab['id']}/lab"
    kernel = web.post(f"{base}/api/kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    cookie = "; ".join(f"{k}={v}" for k, v in web.cookies.items())
    url = f"ws://127.0.0.1:{server.port}{base}/api/kernels/{kernel.json()['id']}/channels?session_id={uuid.uuid4().hex}"
    with connect(url, additional_headers={"Cookie": cookie}, open_timeout=20) as ws:  # no subprotocol: JSON frames
        assert execute(ws, "1+1") == "2"
        # the console's own server and user token, as modelyard.submit in a cell reads them
        code = ("import subprocess, sys, json\n"
                "r = subprocess.run([sys.executable, '-m', 'modelyard', 'jobs', '--json'], capture_output=True, text=True)\n"
                "[j['id'] for j in json.loads(r.stdout)['jobs']]")
        assert str(lab["id"]) in execute(ws, code, timeout=60)
        # and the SDK turns a cell's work into a background job of the console's owner
        code = ("import modelyard, sys, tempfile\n"
                "j = modelyard.submit([sys.executable, '-c', 'print(6 * 7)'], workdir=tempfile.mkdtemp(), name='from-a-cell')\n"
                "j.id")
        submitted = int(execute(ws, code, timeout=60))
    with server.client() as c:
        wait_for(lambda: c.get(f"/jobs/{submitted}").json()["state"] in ENDED, timeout=60, what="the cell's job")
        ran = c.get(f"/jobs/{submitted}").json()
        assert (ran["name"], ran["owner"], ran["state"]) == ("from-a-cell", lab["owner"], "succeeded")
        assert "42" in c.get(f"/jobs/{submitted}/logs").text
    web.delete(f"{base}/api/kernels/{kernel.json()['id']}")


def execute(ws: Any, code: str, timeout: float = 30) -> str:
    """Run ``code`` on the kernel's shell channel; the text of its result."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    while True:
        msg = json.loads(ws.recv(timeout=timeout))
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        assert msg["msg_type"] != "error", msg["content"]
        if msg["msg_type"] == "execute_result":
            return msg["content"]["data"]["text/plain"]


def test_the_browser_opens_jupyterlab_from_the_job_page_and_runs_a_cell(
        lab: dict[str, Any], browser: Browser, server: ServerProcess) -> None:  # noqa: F811
    page = sign_in(browser, server, server.token)
    try:
        page.goto(f"{server.url}/ui/jobs/{lab['id']}")
        page.click("#open-lab")
        expect(page).to_have_url(f"{server.url}/ui/jobs/{lab['id']}/lab/lab")
        card = page.locator('.jp-LauncherCard[data-category="Notebook"]').first
        expect(card).to_be_visible(timeout=60_000)
        card.click()
        # the kernel's status comes over the proxied websocket: idle means it is connected
        expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=60_000)
        editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        editor.fill("print(6 * 7)")
        expect(editor).to_have_text("print(6 * 7)")
        editor.press("Shift+Enter")
        expect(page.locator(".jp-OutputArea-output").first).to_have_text("42", timeout=60_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console.png"))
    finally:
        page.context.close()


def test_an_idle_console_ends_with_its_notebooks_in_its_outputs(server: ServerProcess, web: httpx.Client) -> None:  # noqa: F811
    # started with the CLI, which returns once JupyterLab answers; its idle time counts from its start,
    # so the timeout leaves room for a loaded machine between the two
    cli = subprocess.run([sys.executable, "-m", "modelyard", "notebook", "--idle-timeout", "6s", "--name", "idle",
                          "--json"], env={**os.environ, "MODELYARD_URL": server.url, "MODELYARD_TOKEN": server.token},
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    job = {"id": json.loads(cli.stdout)["job_id"]}
    assert json.loads(cli.stdout)["ready"] is True
    assert json.loads(cli.stdout)["url"] == f"{server.url}/ui/jobs/{job['id']}/lab/lab"
    # over the API's 1 MiB body limit, as a notebook with a few plots is: the proxy streams it to JupyterLab
    plot = {"output_type": "display_data", "metadata": {}, "data": {"text/plain": "x" * 1_500_000}}
    cell = {"cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {}, "outputs": [plot], "source": "plot()"}
    notebook = {"type": "notebook", "content": {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}
    saved = web.put(f"/ui/jobs/{job['id']}/lab/api/contents/kept.ipynb", json=notebook)
    assert saved.status_code in (200, 201), saved.text
    with server.client() as c:
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] in ENDED, timeout=60, what="the idle console to end")
        assert c.get(f"/jobs/{job['id']}").json()["state"] == "succeeded"
        paths = [f["path"] for f in c.get(f"/jobs/{job['id']}/outputs").json()["files"]]
        assert "notebooks/kept.ipynb" in paths
        assert f"console job {job['id']}" not in [t["name"] for t in c.get("/tokens").json()["tokens"]]
    assert web.get(f"/ui/jobs/{job['id']}/lab/api/status").status_code == 409  # no longer running
    # a restart is a new attempt (its own port and token) that starts from the notebooks the last one kept
    with server.client() as c:
        assert c.post(f"/jobs/{job['id']}/restart").status_code == 200
        wait_for(lambda: c.get(f"/jobs/{job['id']}/console").json()["ready"], timeout=60, what="the restarted console")
        kept = web.get(f"/ui/jobs/{job['id']}/lab/api/contents/kept.ipynb")
        assert kept.status_code == 200 and kept.json()["content"]["cells"][0]["source"] == "plot()"
        c.post(f"/jobs/{job['id']}/stop")
