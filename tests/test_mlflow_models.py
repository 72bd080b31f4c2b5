"""MLflow 3's logged models with the real client: ``log_model``, ``load_model`` by ``models:/`` and
``runs:/``, ``search_logged_models``, and sklearn autolog's model in a real job, among its outputs
(README "MLflow models"). The module server and fixtures of test_mlflow_client.py."""
from __future__ import annotations

import sys

import httpx
import mlflow
import mlflow.sklearn
import numpy as np
import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

from conftest import wait_for
from servers import ServerProcess
from test_mlflow_client import alice, server, tracking  # noqa: F401  (the module's fixtures, reused)

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 4)
Y = np.array([0, 1, 1, 1] * 4)
# named, so log_model does not load the model again to infer them; cloudpickle, as autolog's default
# (log_model's own, skops, needs the skops package on the client)
AS = {"pip_requirements": ["scikit-learn"], "serialization_format": "cloudpickle"}


def test_log_model_and_load_it_back_by_model_and_run(server: ServerProcess, alice: str) -> None:  # noqa: F811
    fitted = LogisticRegression().fit(X, Y)
    with tracking(server, alice) as client:
        mlflow.set_experiment("models")
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(fitted, name="model", **AS, params={"C": "1.0"})
        got = client.get_logged_model(info.model_id)
        assert got.status == LoggedModelStatus.READY and got.source_run_id == run.info.run_id
        assert got.name == "model" and got.params == {"C": "1.0"}
        assert got.artifact_location == f"mlflow-artifacts:/models/{info.model_id}/artifacts"
        for uri in (f"models:/{info.model_id}", f"runs:/{run.info.run_id}/model"):
            loaded = mlflow.sklearn.load_model(uri)
            assert (loaded.predict(X) == fitted.predict(X)).all(), uri
        outputs = client.get_run(run.info.run_id).outputs.model_outputs
        assert [o.model_id for o in outputs] == [info.model_id]
        # search: by experiment, by name and by source run; tags set and deleted
        exp = run.info.experiment_id
        client.set_logged_model_tags(info.model_id, {"stage": "dev"})
        assert [m.model_id for m in client.search_logged_models([exp], filter_string="name = 'model'")] \
            == [info.model_id]
        assert [m.model_id for m in client.search_logged_models(
            [exp], filter_string=f"source_run_id = '{run.info.run_id}' AND tags.stage = 'dev'")] == [info.model_id]
        assert list(client.search_logged_models([exp], filter_string="name = 'other'")) == []
        client.delete_logged_model_tag(info.model_id, "stage")
        assert "stage" not in client.get_logged_model(info.model_id).tags
        # bad input answers in MLflow's form, naming what is wrong
        for call, code, text in (
                (lambda: client.get_logged_model("m-" + "0" * 32), "RESOURCE_DOES_NOT_EXIST", "not found"),
                (lambda: client.search_logged_models([exp], filter_string="name ~ 'x'"), "INVALID_PARAMETER_VALUE",
                 "unknown comparison")):
            with pytest.raises(MlflowException) as e:
                call()
            assert e.value.error_code == code and text in e.value.message, e.value.message
        auth = {"Authorization": f"Bearer {alice}"}
        r = httpx.patch(f"{server.url}/api/2.0/mlflow/logged-models/{info.model_id}", headers=auth,
                        json={"status": "DONE"})
        assert r.status_code == 400 and "LOGGED_MODEL_READY" in r.json()["message"], r.text
        r = httpx.post(f"{server.url}/api/2.0/mlflow/logged-models", headers=auth,
                       json={"experiment_id": exp, "source_run_id": run.info.run_id, "name": "../../etc"})
        assert r.status_code == 400 and "invalid model name" in r.json()["message"], r.text
        client.delete_logged_model(info.model_id)
        with pytest.raises(MlflowException) as e:
            client.get_logged_model(info.model_id)
        assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        r = httpx.get(f"{server.url}/api/2.0/mlflow/logged-models/{info.model_id}", headers=auth,
                      params={"allow_deleted": "true"})
        assert r.json()["model"]["info"]["name"] == "model", r.text
        with pytest.raises(MlflowException) as e:  # outside any run: modelyard has no run to keep it with
            mlflow.sklearn.log_model(fitted, name="loose", **AS)
        assert e.value.error_code == "INVALID_PARAMETER_VALUE" and "mlflow.start_run()" in e.value.message


def test_a_jobs_autolog_logs_a_model_among_its_outputs(server: ServerProcess, alice: str) -> None:  # noqa: F811
    """sklearn autolog in a real job: its model is logged (no warning), in the job's outputs, and goes
    with it; registered by the job's token, its version outlives the job."""
    code = (
        "import logging, warnings, mlflow, mlflow.sklearn, numpy as np\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "warnings.simplefilter('always')\n"
        "mlflow.sklearn.autolog(log_model_signatures=False, log_datasets=False, silent=False,\n"
        "                       registered_model_name='autologged')\n"
        "X = np.array([[0.0, 0.0], [1.0, 1.0]] * 4); y = np.array([0, 1] * 4)\n"
        "with mlflow.start_run():\n"
        "    LogisticRegression().fit(X, y)\n"
        "print('MODEL', mlflow.last_logged_model().model_id)\n"
    )
    with server.client(alice) as c:
        r = c.post("/jobs", json={"spec": {"command": [sys.executable, "-c", code], "name": "logs-a-model"}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]

        def ended() -> dict | None:
            job = c.get(f"/jobs/{job_id}").json()
            return job if job["state"] in ("succeeded", "failed") else None

        job = wait_for(ended, timeout=90, what=f"job {job_id} to end")
        logs = [x["text"] for x in c.get(f"/jobs/{job_id}/logs").json()["lines"]]
        assert job["state"] == "succeeded", logs
        assert not [line for line in logs if "logged-models" in line or "ENDPOINT_NOT_FOUND" in line], logs
        model_id = next(line.split()[1] for line in logs if line.startswith("MODEL "))
        files = [f["path"] for f in c.get(f"/jobs/{job_id}/outputs").json()["files"]]
        assert f"mlflow/models/{model_id}/MLmodel" in files, files
    with tracking(server, alice) as client:
        got = client.get_logged_model(model_id)
        assert got.source_run_id == str(job_id) and got.status == LoggedModelStatus.READY
        assert mlflow.sklearn.load_model(f"runs:/{job_id}/model").predict(X).shape == (16,)
    with server.client(alice) as c:  # removed with its job
        assert c.delete(f"/jobs/{job_id}").status_code == 200
    with tracking(server, alice) as client:
        with pytest.raises(MlflowException) as e:
            client.get_logged_model(model_id)
        assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        # the version the job's token registered keeps its copy (README "MLflow model registry")
        assert client.get_model_version("autologged", "1").run_id == str(job_id)
        assert mlflow.sklearn.load_model("models:/autologged/1").predict(X).shape == (16,)
