"""The real mlflow client, unchanged, against a real modelyard server (README "MLflow").

A script outside any job makes runs with no process; a job's own ``mlflow.start_run()`` logs into
the job. One server for the module.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from conftest import wait_for
from serverproc import clean_env, cli
from servers import ServerProcess, ui_sign_in

PY = sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("mlflow") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> str:
    with server.client() as c:
        r = c.post("/users", json={"name": "alice", "no_isolation": True})
        assert r.status_code == 201, r.text
        return r.json()["token"]


@contextmanager
def tracking(server: ServerProcess, token: str) -> Iterator[MlflowClient]:
    """The client as a user's script sets it up: the server's URL and a modelyard token."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", server.url)
        mp.setenv("MLFLOW_TRACKING_TOKEN", token)
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # an error is the answer, not a reason to retry
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        mlflow.set_tracking_uri(server.url)
        try:
            yield MlflowClient(server.url)
        finally:
            while mlflow.active_run():
                mlflow.end_run()
            mlflow.set_tracking_uri(None)
            # set_experiment is the client's choice for the whole process: a later module's server
            # has no experiment of that id
            mlflow.tracking.fluent._active_experiment_id = None


def test_a_training_loop_logs_a_run_with_no_process(server: ServerProcess, alice: str) -> None:
    with tracking(server, alice) as client:
        mlflow.set_experiment("digits")
        with mlflow.start_run(run_name="lr-0.01") as run:
            mlflow.log_params({"lr": 0.01, "optimizer": "adam"})
            mlflow.log_param("epochs", 3)
            for step in range(20):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metrics({"accuracy": 0.91, "f1": 0.88}, step=19)
            mlflow.set_tag("stage", "dev")
            digits = from_pandas(pd.DataFrame({"pixel": [0.0, 1.0]}), name="digits")
            mlflow.log_input(digits, context="training")
            mlflow.log_input(digits, context="training")  # the same dataset again: kept once
            run_id = run.info.run_id
            # while it runs it is a job of kind "run", running, with no process
            with server.client(alice) as c:
                job = c.get(f"/jobs/{run_id}").json()
                assert (job["kind"], job["state"], job["has_process"], job["attempts"]) == ("run", "running", False, [])
        got = client.get_run(run_id)
        assert got.info.status == "FINISHED" and got.info.user_id == "alice" and got.info.run_name == "lr-0.01"
        assert got.info.artifact_uri == f"mlflow-artifacts:/runs/{run_id}/artifacts"
        assert got.data.params == {"lr": "0.01", "optimizer": "adam", "epochs": "3"}
        assert got.data.metrics == {"loss": 1.0 / 20, "accuracy": 0.91, "f1": 0.88}
        assert got.data.tags["stage"] == "dev" and got.data.tags["mlflow.runName"] == "lr-0.01"
        (used,) = got.inputs.dataset_inputs
        assert used.dataset.name == "digits" and used.dataset.digest == digits.digest
        assert [(t.key, t.value) for t in used.tags] == [("mlflow.data.context", "training")]
        history = client.get_metric_history(run_id, "loss")
        assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(20)]
        exp = client.get_experiment_by_name("digits")
        assert exp is not None and got.info.experiment_id == exp.experiment_id
    with server.client(alice) as c:
        job = c.get(f"/jobs/{run_id}").json()
        assert job["state"] == "succeeded" and job["params"]["lr"] == "0.01"
        assert job["experiment_id"] == int(exp.experiment_id)
        listed = c.get("/jobs").json()
        assert [j["kind"] for j in listed["jobs"] if j["id"] == int(run_id)] == ["run"]
        assert "optimizer" in listed["param_names"]
        series = c.get(f"/jobs/{run_id}/metrics").json()
        assert [p["value"] for p in series["loss"]][-1] == 1.0 / 20 and len(series["loss"]) == 20
        # no command to run again
        for verb in ("restart", "clone"):
            r = c.post(f"/jobs/{run_id}/{verb}", json={}) if verb == "clone" else c.post(f"/jobs/{run_id}/{verb}")
            assert r.status_code == 409 and "no process" in r.json()["error"]["message"], r.text
    # the jobs page and `modelyard jobs` show it, marked as a run with no process
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        assert ui_sign_in(browser, alice).status_code in (200, 303)
        rows = browser.get("/ui/jobs").text
        assert f'data-job-id="{run_id}"' in rows and "run · no process" in rows
        page = browser.get(f"/ui/jobs/{run_id}").text
        assert "An MLflow run with no process" in page and 'data-run-tag="stage"' in page and 'id="no-log"' in page
        assert 'data-action="restart"' not in page and 'data-action="clone"' not in page
    done = cli(["jobs"], clean_env(server.home, MODELYARD_URL=server.url, MODELYARD_TOKEN=alice, COLUMNS="200"))
    assert done.returncode == 0 and "MLflow run, no process" in done.stdout, done.stdout + done.stderr


def test_autolog_style_batches_and_their_limits(server: ServerProcess, alice: str) -> None:
    with tracking(server, alice) as client:
        run = client.create_run("0", run_name="batches")
        rid = run.info.run_id
        client.log_batch(rid, metrics=[Metric("m", float(i), 1_700_000_000_000 + i, i) for i in range(1000)],
                         params=[Param(f"p{i}", str(i)) for i in range(100)],
                         tags=[RunTag("framework", "sklearn")])
        got = client.get_run(rid)
        assert got.data.metrics["m"] == 999.0 and len(got.data.params) == 100
        assert got.data.tags["framework"] == "sklearn"
        # the client splits a bigger batch itself; one sent whole is refused as MLflow's server refuses it
        r = httpx.post(f"{server.url}/api/2.0/mlflow/runs/log-batch", headers={"Authorization": f"Bearer {alice}"},
                       json={"run_id": rid, "metrics": [{"key": "m", "value": 1, "timestamp": 0, "step": i}
                                                        for i in range(1001)]})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "at most 1000 metrics" in r.json()["message"]
        r = httpx.post(f"{server.url}/api/2.0/mlflow/runs/log-batch", headers={"Authorization": f"Bearer {alice}"},
                       content=b'{"run_id": "' + rid.encode() + b'", "tags": [' + b'{"key": "k", "value": "v"},' * 60000
                       + b'{"key": "k", "value": "v"}]}')
        assert r.status_code == 413 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text
        r = httpx.post(f"{server.url}/api/2.0/mlflow/runs/log-batch", headers={"Authorization": f"Bearer {alice}"},
                       content=b'{"run_id": ')
        assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
        with pytest.raises(MlflowException) as e:
            client.log_param(rid, "p1", "changed")
        assert e.value.error_code == "INVALID_PARAMETER_VALUE" and "cannot be changed" in e.value.message
        # `modelyard stop` ends a run with no process at once; `modelyard rm` removes it
        with server.client(alice) as c:
            assert c.delete(f"/jobs/{rid}").status_code == 409  # still running
            assert c.post(f"/jobs/{rid}/stop").json()["state"] == "stopped"
            assert client.get_run(rid).info.status == "KILLED"
            assert c.delete(f"/jobs/{rid}").status_code == 200
            assert c.get(f"/jobs/{rid}").status_code == 404
        with pytest.raises(MlflowException) as e:
            client.get_run(rid)
        assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_search_runs_filters_on_params_metrics_tags_and_attributes(server: ServerProcess, alice: str) -> None:
    with tracking(server, alice) as client:
        exp_id = client.create_experiment("search")
        ids = {}
        for lr, acc, opt in ((0.1, 0.7, "adam"), (0.01, 0.9, "adam"), (0.001, 0.8, "sgd")):
            r = client.create_run(exp_id, run_name=f"lr{lr}")
            client.log_batch(r.info.run_id, metrics=[Metric("acc", acc, 0, 0)],
                             params=[Param("lr", str(lr)), Param("opt", opt)], tags=[RunTag("team", f"t-{opt}")])
            ids[lr] = r.info.run_id
        client.set_terminated(ids[0.001], "FAILED")

        def found(filter_string: str, order_by: list[str] | None = None) -> list[str]:
            return [r.info.run_id for r in client.search_runs([exp_id], filter_string, order_by=order_by)]

        assert found("metrics.acc > 0.75", ["metrics.acc DESC"]) == [ids[0.01], ids[0.001]]
        assert found("params.opt = 'adam' and metrics.acc < 0.8") == [ids[0.1]]
        assert set(found("params.lr < 0.05")) == {ids[0.01], ids[0.001]}
        assert found("tags.team LIKE 't-s%'") == [ids[0.001]]
        assert found("tags.team LIKE 'T-S%'") == [] and found("tags.team ILIKE 'T-S%'") == [ids[0.001]]
        assert found("attributes.status = 'FAILED'") == [ids[0.001]]
        assert set(found("attributes.status IN ('RUNNING')")) == {ids[0.1], ids[0.01]}
        assert found("attributes.run_name = 'lr0.1'") == [ids[0.1]]
        assert found("", ["params.lr ASC"]) == [ids[0.001], ids[0.01], ids[0.1]]
        page = client.search_runs([exp_id], order_by=["metrics.acc ASC"], max_results=2)
        rest = client.search_runs([exp_id], order_by=["metrics.acc ASC"], max_results=2, page_token=page.token)
        assert [r.info.run_id for r in [*page, *rest]] == [ids[0.1], ids[0.001], ids[0.01]] and rest.token is None
        frame = mlflow.search_runs(experiment_ids=[exp_id], filter_string="params.opt = 'adam'")
        assert sorted(frame["run_id"]) == sorted([ids[0.1], ids[0.01]])
        client.delete_run(ids[0.1])
        assert ids[0.1] not in found("")
        client.restore_run(ids[0.1])
        assert ids[0.1] in found("")
        with pytest.raises(MlflowException) as e:
            client.search_runs([exp_id], "metrics.acc > 1 OR metrics.acc < 0")
        assert e.value.error_code == "INVALID_PARAMETER_VALUE" and "AND only" in e.value.message


def test_experiments_by_name_and_their_errors(server: ServerProcess, alice: str) -> None:
    with tracking(server, alice) as client:
        exp_id = client.create_experiment("vision", tags={"area": "cv"})
        assert client.get_experiment_by_name("vision").tags == {"area": "cv"}
        with pytest.raises(MlflowException) as e:
            client.create_experiment("vision")
        assert e.value.error_code == "RESOURCE_ALREADY_EXISTS" and "'vision' already exists" in e.value.message
        client.rename_experiment(exp_id, "vision-2")
        client.set_experiment_tag(exp_id, "owner", "alice")
        assert client.get_experiment(exp_id).name == "vision-2"
        assert client.get_experiment(exp_id).tags == {"area": "cv", "owner": "alice"}
        assert client.get_experiment_by_name("vision") is None
        assert client.get_experiment("0").name == "Default"
        client.delete_experiment(exp_id)
        names = [e.name for e in client.search_experiments()]
        assert "vision-2" not in names and "Default" in names
        assert "vision-2" in [e.name for e in client.search_experiments(view_type=2)]
        client.restore_experiment(exp_id)
        assert [e.name for e in client.search_experiments(filter_string="name LIKE 'vision%'")] == ["vision-2"]
        for call, code, text in ((lambda: client.get_run("999999"), "RESOURCE_DOES_NOT_EXIST", "run '999999' not found"),
                                 (lambda: client.get_experiment("424242"), "RESOURCE_DOES_NOT_EXIST", "no experiment"),
                                 (lambda: client.search_runs(["0"], "params.lr ~ 1"), "INVALID_PARAMETER_VALUE",
                                  "unknown comparison '~'")):
            with pytest.raises(MlflowException) as e:
                call()
            assert e.value.error_code == code and text in e.value.message, e.value.message
    r = httpx.post(f"{server.url}/api/2.0/mlflow/runs/create", json={}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    auth = {"Authorization": f"Bearer {alice}"}
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):  # search by GET too, as MLflow's server allows
        r = httpx.get(f"{server.url}{prefix}/experiments/search", params={"max_results": 5, "filter": "name = 'vision-2'"},
                      headers=auth)
        assert [e["name"] for e in r.json()["experiments"]] == ["vision-2"], r.text
    r = httpx.get(f"{server.url}/ajax-api/2.0/mlflow/webhooks", headers=auth)  # the registry's webhooks: not served
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert "/api/2.0/mlflow" not in str(httpx.get(f"{server.url}/api/v1/openapi.json").json()["paths"])


def test_a_jobs_own_start_run_logs_into_the_job(server: ServerProcess, alice: str) -> None:
    code = (
        "import mlflow, os\n"
        "assert os.environ['MLFLOW_RUN_ID'] == os.environ['MODELYARD_JOB_ID']\n"
        "with mlflow.start_run() as run:\n"
        "    assert run.info.run_id == os.environ['MODELYARD_JOB_ID']\n"
        "    mlflow.log_params({'lr': '0.1', 'batch': 32})\n"
        "    for step in range(5):\n"
        "        mlflow.log_metric('loss', 5 - step, step=step)\n"
        "    mlflow.set_tag('model', 'cnn')\n"
        "    mlflow.end_run('FAILED')\n"  # the job's exit decides its state, not its client
    )
    with server.client(alice) as c:
        r = c.post("/jobs", json={"spec": {"command": [PY, "-c", code], "name": "with-mlflow",
                                           "params": {"seed": 1}}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]

        def ended() -> dict | None:
            job = c.get(f"/jobs/{job_id}").json()
            return job if job["state"] in ("succeeded", "failed") else None

        job = wait_for(ended, timeout=60, what=f"job {job_id} to end")
        logs = [x["text"] for x in c.get(f"/jobs/{job_id}/logs").json()["lines"]]
        assert job["state"] == "succeeded", logs
        assert job["params"] == {"seed": 1, "lr": "0.1", "batch": "32"}
        series = c.get(f"/jobs/{job_id}/metrics").json()
        assert [(p["step"], p["value"]) for p in series["loss"]] == [(s, 5.0 - s) for s in range(5)]
    with tracking(server, alice) as client:
        got = client.get_run(str(job_id))
        assert got.data.tags["model"] == "cnn" and got.info.status == "FINISHED"
        assert got.data.params["seed"] == "1"
    with httpx.Client(base_url=server.url, timeout=30) as browser:  # its page: the MLflow tags, and its log
        ui_sign_in(browser, alice)
        page = browser.get(f"/ui/jobs/{job_id}").text
        assert 'data-run-tag="model"' in page and 'id="no-log"' not in page and "no process" not in page


def test_a_jobs_unchanged_script_names_its_experiment_and_a_job_is_submitted_into_one(
        server: ServerProcess, alice: str, tmp_path: Path) -> None:
    names = (  # as most MLflow scripts start
        "import mlflow, os\n"
        "mlflow.set_experiment('mnist')\n"
        "with mlflow.start_run() as run:\n"
        "    assert run.info.run_id == os.environ['MODELYARD_JOB_ID']\n"
        "    mlflow.log_param('lr', 0.1)\n"
        "    mlflow.log_metric('acc', 0.9, step=1)\n"
    )
    submitted = (  # submitted into "vision": told so, and the client's readings of it agree with its run
        "import mlflow, os\n"
        # the client finds the experiment by MLFLOW_EXPERIMENT_NAME and checks MLFLOW_EXPERIMENT_ID against it
        "found = mlflow.search_runs(output_format='list')\n"
        "assert [r.info.run_id for r in found] == [os.environ['MODELYARD_JOB_ID']], found\n"
        "exp = mlflow.set_experiment('vision')\n"
        "assert exp.experiment_id == os.environ['MLFLOW_EXPERIMENT_ID'], dict(os.environ)\n"
        "with mlflow.start_run():\n"
        "    mlflow.log_metric('acc', 0.5)\n"
    )
    ids = {}
    with server.client(alice) as c:
        r = c.post("/jobs", json={"spec": {"command": [PY, "-c", names]}})
        assert r.status_code == 201 and r.json()["experiment_id"] is None, r.text  # its script names one, later
        ids["mnist"] = r.json()["id"]
        done = cli(["submit", "--json", "--experiment", "vision", "-e", "MLFLOW_EXPERIMENT_NAME=vision", "--",
                    PY, "-c", submitted],
                   clean_env(server.home, MODELYARD_URL=server.url, MODELYARD_TOKEN=alice), cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        ids["vision"] = json.loads(done.stdout)["id"]
        assert json.loads(done.stdout)["experiment"] == "vision"
        # MLFLOW_EXPERIMENT_NAME alone in its env chooses as --experiment does
        r = c.post("/jobs", json={"spec": {"command": ["true"], "env": {"MLFLOW_EXPERIMENT_NAME": "audio"}}})
        assert r.status_code == 201 and r.json()["experiment_id"] is not None, r.text
        ids["audio"] = r.json()["id"]
        r = c.post("/jobs", json={"spec": {"command": ["true"], "experiment": ""}})
        assert r.status_code == 422 and r.json()["error"]["field"] == "spec.experiment", r.text

        def ended(job_id: int) -> dict | None:
            job = c.get(f"/jobs/{job_id}").json()
            return job if job["state"] in ("succeeded", "failed") else None

        for name, job_id in ids.items():
            job = wait_for(lambda: ended(job_id), timeout=60, what=f"job {job_id} to end")
            logs = [x["text"] for x in c.get(f"/jobs/{job_id}/logs").json()["lines"]]
            assert job["state"] == "succeeded", (name, logs)
        listed = [j["id"] for j in c.get("/jobs", params={"experiment": "vision"}).json()["jobs"]]
        assert listed == [ids["vision"]]  # the jobs list by experiment
        assert ids["vision"] not in [j["id"] for j in c.get("/jobs", params={"experiment": "Default"}).json()["jobs"]]
    with tracking(server, alice) as client:
        for name, job_id in ids.items():
            exp = client.get_experiment_by_name(name)
            assert exp is not None
            assert client.get_run(str(job_id)).info.experiment_id == exp.experiment_id, name
            assert [r.info.run_id for r in client.search_runs([exp.experiment_id])] == [str(job_id)], name
        got = client.get_run(str(ids["mnist"]))
        assert got.data.params == {"lr": "0.1"} and got.data.metrics == {"acc": 0.9}
        assert client.get_run(str(ids["vision"])).data.metrics == {"acc": 0.5}
        # what cannot be chosen at submit is refused there, naming it
        client.delete_experiment(client.create_experiment("retired"))
        mnist = client.get_experiment_by_name("mnist").experiment_id
    with server.client(alice) as c:
        for spec, field, text in (
            ({"experiment": "retired"}, "experiment", "'retired' is deleted"),
            ({"env": {"MLFLOW_EXPERIMENT_ID": "999999"}}, "env.MLFLOW_EXPERIMENT_ID", "no experiment 999999"),
            ({"experiment": "vision", "env": {"MLFLOW_EXPERIMENT_ID": mnist}}, "env.MLFLOW_EXPERIMENT_ID", "'mnist'"),
        ):
            r = c.post("/jobs", json={"spec": {"command": ["true"], **spec}})
            error = r.json()["error"]
            assert r.status_code == 422 and error["field"] == field and text in error["message"], r.text
