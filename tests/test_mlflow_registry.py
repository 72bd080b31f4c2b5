"""The MLflow model registry with the real client: ``log_model(registered_model_name=)``,
``register_model``, aliases, ``load_model`` by version and by alias, search, rename, stages, and a
version's files outliving the run they came from (README "MLflow model registry"). The module
server and fixtures of test_mlflow_client.py."""
from __future__ import annotations

import httpx
import mlflow
import mlflow.sklearn
import pytest
from mlflow.exceptions import MlflowException

from servers import ServerProcess
from test_mlflow_client import alice, server, tracking  # noqa: F401  (the module's fixtures, reused)
from test_mlflow_models import AS, X, Y
from sklearn.linear_model import LogisticRegression


def test_register_alias_load_search_rename(server: ServerProcess, alice: str) -> None:  # noqa: F811
    first, second = LogisticRegression(C=1.0).fit(X, Y), LogisticRegression(C=0.01).fit(X[:8], Y[:8])
    with tracking(server, alice) as client:
        mlflow.set_experiment("registry")
        with mlflow.start_run() as run:
            one = mlflow.sklearn.log_model(first, name="model", registered_model_name="digits", **AS)
        with mlflow.start_run() as other:
            logged = mlflow.sklearn.log_model(second, name="model", **AS)
        two = mlflow.register_model(f"runs:/{other.info.run_id}/model", "digits")
        assert (one.registered_model_version, two.version) == ("1", "2")
        v1 = client.get_model_version("digits", "1")
        assert v1.run_id == run.info.run_id and v1.source == f"models:/{one.model_id}" and v1.status == "READY"
        # the client links the logged model to its version
        assert "digits" in client.get_logged_model(one.model_id).tags["mlflow.modelVersions"]
        client.set_registered_model_alias("digits", "champion", "1")
        assert client.get_model_version_by_alias("digits", "champion").version == "1"
        for uri, fitted in (("models:/digits/1", first), ("models:/digits/2", second),
                            ("models:/digits@champion", first), ("models:/digits/latest", second)):
            assert (mlflow.sklearn.load_model(uri).predict(X) == fitted.predict(X)).all(), uri
        client.set_registered_model_tag("digits", "team", "vision")
        client.set_model_version_tag("digits", "2", "validated", "yes")
        assert [m.name for m in client.search_registered_models(filter_string="tags.team = 'vision'")] == ["digits"]
        assert [m.name for m in client.search_registered_models(filter_string="name LIKE 'dig%'")] == ["digits"]
        assert [v.version for v in client.search_model_versions("name = 'digits'")] == ["2", "1"]
        assert [v.version for v in client.search_model_versions(f"run_id = '{other.info.run_id}'")] == ["2"]
        assert [v.version for v in client.search_model_versions("tags.validated = 'yes'")] == ["2"]
        got = client.get_registered_model("digits")
        assert got.aliases == {"champion": "1"} and got.tags == {"team": "vision"}
        assert [v.version for v in got.latest_versions] == ["2"]
        client.transition_model_version_stage("digits", "2", "Production")  # deprecated in MLflow; still served
        with pytest.warns(FutureWarning, match="deprecated"):
            assert [v.version for v in client.get_latest_versions("digits", stages=["Production"])] == ["2"]
        client.update_registered_model("digits", description="digit classifier")
        client.rename_registered_model("digits", "digits-v2")
        assert client.get_registered_model("digits-v2").description == "digit classifier"
        assert mlflow.sklearn.load_model("models:/digits-v2@champion").predict(X).shape == (16,)
        # bad input answers in MLflow's form, naming what is wrong
        for call, code, text in (
                (lambda: client.get_registered_model("digits"), "RESOURCE_DOES_NOT_EXIST", "'digits' not found"),
                (lambda: client.create_registered_model("digits-v2"), "RESOURCE_ALREADY_EXISTS", "already exists"),
                (lambda: client.get_model_version("digits-v2", "9"), "RESOURCE_DOES_NOT_EXIST", "version 9"),
                (lambda: client.set_registered_model_alias("digits-v2", "latest", "1"), "INVALID_PARAMETER_VALUE",
                 "invalid alias"),
                (lambda: client.create_model_version("digits-v2", "s3://elsewhere/model"),
                 "INVALID_PARAMETER_VALUE", "not a model of this server"),
                (lambda: client.search_registered_models(filter_string="name ~ 'x'"), "INVALID_PARAMETER_VALUE",
                 "bad filter")):
            with pytest.raises(MlflowException) as e:
                call()
            assert e.value.error_code == code and text in e.value.message, e.value.message
        r = httpx.get(f"{server.url}/api/2.0/mlflow/model-versions/get", params={"name": "digits-v2", "version": "x"},
                      headers={"Authorization": f"Bearer {alice}"})
        assert r.status_code == 400 and "positive integer" in r.json()["message"], r.text
        # the removal rule: a version's files are copied when it is registered, so removing the run
        # (its logged model and their files with it) leaves the version whole
        with server.client(alice) as c:
            assert c.delete(f"/jobs/{run.info.run_id}").status_code == 200
        with pytest.raises(MlflowException):
            client.get_logged_model(one.model_id)
        assert (mlflow.sklearn.load_model("models:/digits-v2/1").predict(X) == first.predict(X)).all()
        # deleting a version takes its aliases and files; deleting the model, all of it
        client.delete_model_version("digits-v2", "1")
        with pytest.raises(MlflowException) as e:
            client.get_model_version_by_alias("digits-v2", "champion")
        assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert client.create_model_version("digits-v2", f"models:/{logged.model_id}").version == "3"  # never reused
        client.delete_registered_model("digits-v2")
        assert client.search_registered_models() == []
    registry = server.home / "artifacts" / "registry"  # the versions' copies went with them
    assert not [f for f in registry.rglob("*") if f.is_file()], list(registry.rglob("*"))
