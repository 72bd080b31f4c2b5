"""The SDK holding bob's token cannot see, read or stop alice's job: every call answers 404, as
if the job did not exist, and alice's job runs on untouched. Real server, real job."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProc, start_server

import modelyard
from modelyard.client import Client, ClientError
from modelyard.jobs.states import JobState
from modelyard.sdk import Job

PY = sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("sdk-access") / "home") as proc:
        yield proc


@pytest.fixture(scope="module")
def users(server: ServerProc) -> Iterator[dict[str, Client]]:
    with server.client() as admin:
        tokens = {name: admin.create_user(name, no_isolation=True)["token"] for name in ("alice", "bob")}
    clients = {name: modelyard.connect(server.url, token) for name, token in tokens.items()}
    yield clients
    for c in clients.values():
        c.close()


@pytest.fixture(scope="module")
def alices_job(users: dict[str, Client], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    wd = tmp_path_factory.mktemp("alice-code")
    (wd / "train.py").write_text("import time\nprint('alice trains', flush=True)\ntime.sleep(600)\n")
    job = modelyard.submit([PY, "train.py"], wd, tags=["private"], client=users["alice"], max_runtime="5m")
    assert "alice trains" in job.logs(follow=True)  # it runs: the line is followed live until it comes
    yield job
    job.stop()
    job.wait(timeout=30)


CALLS: dict[str, Callable[[Job, Path], Any]] = {
    "refresh": lambda j, _: j.refresh(),
    "stop": lambda j, _: j.stop(),
    "restart": lambda j, _: j.restart(),
    "logs": lambda j, _: list(j.logs()),
    "logs follow": lambda j, _: list(j.logs(follow=True)),
    "metrics": lambda j, _: j.metrics(),
    "outputs": lambda j, _: j.outputs(),
    "download": lambda j, dest: j.download(dest),
    "tag": lambda j, _: j.tag("mine-now"),
    "wait": lambda j, _: j.wait(timeout=5),
}


@pytest.mark.parametrize("call", CALLS)
def test_bobs_sdk_gets_404_for_every_call_on_alices_job(call: str, users: dict[str, Client], alices_job: Job,
                                                       tmp_path: Path) -> None:
    as_bob = Job(alices_job.data, users["bob"])  # bob knows (or guesses) the id
    with pytest.raises(ClientError) as e:
        CALLS[call](as_bob, tmp_path / "loot")
    assert e.value.status == 404, e.value
    assert not (tmp_path / "loot").exists()
    assert alices_job.state is JobState.RUNNING and alices_job.tags == ["private"]


def test_bob_cannot_find_alices_job(users: dict[str, Client], alices_job: Job) -> None:
    with pytest.raises(ClientError) as e:
        modelyard.job(alices_job.id, client=users["bob"])
    assert e.value.status == 404
    assert alices_job not in modelyard.jobs(client=users["bob"])
    assert modelyard.jobs(tag="private", client=users["bob"]) == []
    assert modelyard.jobs(owner="alice", client=users["bob"]) == []
    assert modelyard.jobs(all_users=True, client=users["bob"]) == []
    assert modelyard.jobs(tag="private", client=users["alice"]) == [alices_job]
