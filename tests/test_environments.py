"""Named environments: the store on both databases, the API, the CLI, and ``--environment`` pinned at submit."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverproc import ServerProc, clean_env, cli, start_server
from typer.testing import CliRunner

from servers import ServerProcess
from test_e2e_jobs import all_logs, wait_state
from wheels import local_requirements, make_wheel

from modelyard.cli.main import app
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.environments import EnvironmentSpec
from modelyard.db import Database
from modelyard.db import environments as E
from modelyard.db import users as U

# -- the store, on SQLite and PostgreSQL --------------------------------------------------


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def code_of(e: pytest.ExceptionInfo[ModelyardError]) -> ErrorCode:
    return e.value.code


def test_the_store_keeps_them_per_owner_and_decides_who_sees_them(db: Database) -> None:
    admin = U.create_user(db, "root", admin=True)[0]
    alice = U.create_user(db, "alice")[0]
    bob = U.create_user(db, "bob")[0]
    E.create_environment(db, admin, EnvironmentSpec(name="torch", image="pytorch/pytorch:2.4.0", description="all"))
    E.create_environment(db, alice, EnvironmentSpec(name="mine", requirements="numpy\n"))
    E.create_environment(db, alice, EnvironmentSpec(name="torch", requirements="torch==2.4\n"))  # shadows the admin's
    with pytest.raises(ModelyardError) as taken:
        E.create_environment(db, alice, EnvironmentSpec(name="mine", image="x:1"))
    assert code_of(taken) is ErrorCode.CONFLICT and taken.value.field == "name"

    assert [(e.name, e.owner) for e in E.list_environments(db, bob)] == [("torch", "root")]
    assert [(e.name, e.owner) for e in E.list_environments(db, alice)] == [("mine", "alice"), ("torch", "alice"),
                                                                          ("torch", "root")]
    assert len(E.list_environments(db, admin)) == 3  # an admin sees everyone's
    assert E.get_environment(db, "torch", user=alice).requirements == "torch==2.4\n"  # own first
    assert E.get_environment(db, "torch", user=bob).image == "pytorch/pytorch:2.4.0"
    with pytest.raises(ModelyardError) as hidden:
        E.get_environment(db, "mine", user=bob)
    assert code_of(hidden) is ErrorCode.NOT_FOUND

    with pytest.raises(ModelyardError) as not_theirs:
        E.remove_environment(db, "torch", user=bob)  # visible to bob, but the admin's
    assert code_of(not_theirs) is ErrorCode.FORBIDDEN
    with pytest.raises(ModelyardError) as unseen:
        E.remove_environment(db, "mine", user=bob)
    assert code_of(unseen) is ErrorCode.NOT_FOUND
    assert E.remove_environment(db, "mine", user=admin).owner == "alice"  # an admin may remove anyone's
    assert E.remove_environment(db, "torch", user=alice).owner == "alice"
    assert [e.owner for e in E.list_environments(db, alice)] == ["root"]


# -- the API, and pinning at submit -------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("envs") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def users(server: ServerProcess) -> dict[str, str]:
    with server.client() as admin:
        return {name: admin.post("/users", json={"name": name, "no_isolation": True}).json()["token"] for name in ("carol", "dave")}


def test_create_list_show_and_remove_through_the_api(server: ServerProcess, users: dict[str, str]) -> None:
    with server.client() as admin, server.client(users["carol"]) as carol, server.client(users["dave"]) as dave:
        made = admin.post("/environments", json={"name": "base", "image": "localhost/base:1", "description": "d"})
        assert made.status_code == 201, made.text
        assert made.json() | {"created_at": None} == {"name": "base", "owner": "local", "shared": True,
                                                       "image": "localhost/base:1", "requirements": None,
                                                       "description": "d", "created_at": None}
        assert carol.post("/environments", json={"name": "priv", "requirements": "six\n"}).status_code == 201
        assert [e["name"] for e in carol.get("/environments").json()["environments"]] == ["base", "priv"]
        assert [e["name"] for e in dave.get("/environments").json()["environments"]] == ["base"]
        assert carol.get("/environments/priv").json()["requirements"] == "six\n"
        assert dave.get("/environments/priv").status_code == 404
        assert dave.delete("/environments/priv").status_code == 404
        assert dave.delete("/environments/base").status_code == 403
        assert carol.delete("/environments/priv").json()["name"] == "priv"
        assert carol.get("/environments/priv").status_code == 404
        assert admin.delete("/environments/base").status_code == 200


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "a b", "image": "x:1"}, "name"),
    ({"name": "x", "image": "not a ref"}, "image"),
    ({"name": "x"}, "body"),
    ({"name": "x", "image": "x:1", "requirements": "six"}, "body"),
    ({"name": "x", "image": "x:1", "colour": "red"}, "colour"),
])
def test_bad_input_names_the_field(server: ServerProcess, body: dict, field: str) -> None:
    with server.client() as c:
        r = c.post("/environments", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_submit_pins_the_environment_and_restart_and_clone_keep_it(
        server: ServerProcess, users: dict[str, str], tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, version="1.0", body="VALUE = 1\n")
    make_wheel(wheels, version="2.0", body="VALUE = 2\n")
    first = local_requirements(wheels, "tinypkg==1.0")
    command = ["python", "-c", "import tinypkg; print('value', tinypkg.VALUE)"]
    with server.client(users["carol"]) as c:
        assert c.post("/environments", json={"name": "tiny", "requirements": first}).status_code == 201
        job = c.post("/jobs", json={"spec": {"command": command, "environment": "tiny"}}).json()
        assert (job["environment"], job["requirements"], job["image"]) == ("tiny", first, None)
        wait_state(c, job["id"], "succeeded")
        assert "value 1" in [ln["text"] for ln in all_logs(c, job["id"])]

        # the environment changes; the submitted job, its restart and its clone do not
        c.delete("/environments/tiny")
        c.post("/environments", json={"name": "tiny", "requirements": local_requirements(wheels, "tinypkg==2.0")})
        restarted = c.post(f"/jobs/{job['id']}/restart").json()
        assert restarted["requirements"] == first
        wait_state(c, job["id"], "succeeded")
        assert [ln["text"] for ln in all_logs(c, job["id"], attempt=2) if ln["text"].startswith("value")] == ["value 1"]
        clone = c.post(f"/jobs/{job['id']}/clone", json={}).json()
        assert (clone["environment"], clone["requirements"]) == ("tiny", first)
        fresh = c.post("/jobs", json={"spec": {"command": command, "environment": "tiny"}}).json()
        wait_state(c, fresh["id"], "succeeded")
        assert "value 2" in [ln["text"] for ln in all_logs(c, fresh["id"])]
        wait_state(c, clone["id"], "succeeded")

    with server.client(users["dave"]) as d:  # carol's is private: at submit it does not exist for dave
        r = d.post("/jobs", json={"spec": {"command": ["true"], "environment": "tiny"}})
        assert r.status_code == 404 and r.json()["error"]["field"] == "environment", r.text


# -- the CLI ------------------------------------------------------------------------------

COMMANDS = ("create", "ls", "show", "rm")


def test_every_environment_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for command in COMMANDS:
        done = runner.invoke(app, ["environment", command, "--help"], env={"COLUMNS": "200"})
        assert done.exit_code == 0 and "Example: modelyard environment" in done.output, command


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("envcli") / "home") as proc:
        yield proc


def test_create_ls_show_rm_and_submit_through_the_cli(embedded: ServerProc, tmp_path: Path) -> None:
    env = clean_env(embedded.home, COLUMNS="200")
    req = tmp_path / "requirements.txt"
    make_wheel(tmp_path / "wheels")
    req.write_text(local_requirements(tmp_path / "wheels", "tinypkg==1.0") + "# a comment\n")
    made = cli(["environment", "create", "tp", "--requirements", str(req), "--description", "tiny"], env)
    assert made.returncode == 0 and "created environment tp" in made.stderr, made.stderr
    assert cli(["environment", "create", "img", "--image", "localhost/train:1"], env).returncode == 0
    both = cli(["environment", "create", "bad", "--image", "x:1", "--requirements", str(req)], env)
    assert both.returncode != 0 and "exactly one of --image and --requirements" in both.stderr
    again = cli(["environment", "create", "tp", "--image", "x:1"], env)
    assert again.returncode != 0 and "already have an environment 'tp'" in again.stderr

    ls = cli(["environment", "ls"], env)
    assert ls.returncode == 0 and "requirements: tinypkg==1.0" in ls.stdout and "image localhost/train:1" in ls.stdout
    shown = cli(["environment", "show", "tp"], env)
    assert shown.returncode == 0 and "tinypkg==1.0" in shown.stdout and "tiny" in shown.stdout
    assert json.loads(cli(["environment", "show", "img", "--json"], env).stdout)["image"] == "localhost/train:1"

    code = tmp_path / "code"
    code.mkdir()
    ran = cli(["submit", "--environment", "tp", "--workdir", str(code), "--follow", "--",
               "python", "-c", "import tinypkg; print('value', tinypkg.VALUE)"], env)
    assert ran.returncode == 0 and "value 42" in ran.stdout, ran.stderr
    assert cli(["environment", "rm", "tp"], env).returncode == 0
    gone = cli(["environment", "show", "tp"], env)
    assert gone.returncode != 0 and "environment 'tp' not found" in gone.stderr
    assert cli(["environment", "rm", "img"], env).returncode == 0
