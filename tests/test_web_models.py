"""The model registry in the web console and the CLI: a model registered with the real mlflow client
shows on /ui/models and /ui/models/NAME (versions, aliases, the job each came from), a version's file
downloads byte for byte from its page, the job's page names what was registered from it, and
``modelyard models`` / ``models show`` print the same (README "MLflow model registry"). The real
server and fixtures of test_mlflow_client.py."""
from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import mlflow
import mlflow.sklearn
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from modelyard.cli.main import app as cli_app
from servers import ServerProcess, ui_sign_in
from test_mlflow_client import alice, server, tracking  # noqa: F401  (the module's fixtures, reused)
from test_mlflow_models import AS, X, Y


@pytest.fixture(scope="module")
def digits(server: ServerProcess, alice: str, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: F811
    """Alice's "digits": v1 logged and registered by one run, v2 registered from another's, alias
    champion on v1; and v1's files as the client downloads them from the logged model."""
    with tracking(server, alice) as client:
        mlflow.set_experiment("web-models")
        with mlflow.start_run() as first:
            one = mlflow.sklearn.log_model(LogisticRegression().fit(X, Y), name="model",
                                           registered_model_name="digits", **AS)
        with mlflow.start_run() as second:
            mlflow.sklearn.log_model(LogisticRegression(C=0.1).fit(X, Y), name="model", **AS)
        mlflow.register_model(f"runs:/{second.info.run_id}/model", "digits")
        client.set_registered_model_alias("digits", "champion", "1")
        client.update_registered_model("digits", description="digit classifier")
        logged = Path(mlflow.artifacts.download_artifacts(f"models:/{one.model_id}",
                                                          dst_path=str(tmp_path_factory.mktemp("logged"))))
    return {"runs": (first.info.run_id, second.info.run_id), "logged": logged}


def test_models_pages_show_versions_aliases_jobs_and_download(server: ServerProcess, alice: str,  # noqa: F811
                                                              digits: dict) -> None:
    first, second = digits["runs"]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        ui_sign_in(c, alice)
        listing = c.get("/ui/models")
        assert listing.status_code == 200 and 'href="/ui/models">Models</a>' in listing.text
        row = re.search(r'<tr data-model="digits">.*?</tr>', listing.text, re.S)
        assert row and "v2" in row.group(0) and "champion → v1" in row.group(0) and "digit classifier" in row.group(0)
        data = c.get("/ui/models", params={"format": "json"}).json()
        assert [(m["name"], m["latest_version"], m["aliases"]) for m in data["models"]] == [("digits", 2, {"champion": 1})]
        page = c.get("/ui/models/digits")
        assert page.status_code == 200, page.text[:300]
        for n, run in ((1, first), (2, second)):
            version = re.search(rf'<tr data-version="{n}">.*?</tr>', page.text, re.S)
            assert version and f'href="/ui/jobs/{run}"' in version.group(0) and "READY" in version.group(0)
            assert ("champion" in version.group(0)) == (n == 1)
        # v1's files, downloaded through the page's links, are the logged model's, byte for byte
        section = page.text.split('id="v-1"')[1].split("</section>")[0]
        links = dict((name, href) for href, name in re.findall(r'<a href="([^"]+)" download>([^<]+)</a>', section))
        wanted = {str(f.relative_to(digits["logged"])) for f in digits["logged"].rglob("*") if f.is_file()}
        wanted.discard("registered_model_meta")  # the client writes it beside what it downloads from models:/
        assert set(links) == wanted and {"MLmodel", "model.pkl"} <= wanted, (links, wanted)
        for name, href in links.items():
            with c.stream("GET", href) as r:
                assert r.status_code == 200 and b"".join(r.iter_bytes()) == (digits["logged"] / name).read_bytes()
        # the job's page names the version registered from its run, linking there
        job = c.get(f"/ui/jobs/{first}").text
        assert re.search(r'<a href="/ui/models/digits#v-1">digits v1</a>', job), job[:2000]
        assert '<a href="/ui/models/digits#v-2">digits v2</a>' in c.get(f"/ui/jobs/{second}").text
        unknown = c.get("/ui/models/nothing")
        assert unknown.status_code == 404 and "registered model &#39;nothing&#39; not found" in unknown.text


def _cli(server: ServerProcess, token: str, *args: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(cli_app, list(args), env={"MODELYARD_URL": server.url, "MODELYARD_TOKEN": token,
                                                        "COLUMNS": "200"})
    return done.exit_code, done.stdout, done.stderr


def test_models_cli_lists_and_shows(server: ServerProcess, alice: str, digits: dict) -> None:  # noqa: F811
    first, second = digits["runs"]
    code, out, _ = _cli(server, alice, "models")
    assert code == 0 and re.search(r"digits\s+v2\s+2\s+champion=v1\s+\S+ \S+\s+digit classifier", out), out
    code, out, _ = _cli(server, alice, "models", "--json")
    assert code == 0 and [m["name"] for m in json.loads(out)["models"]] == ["digits"]
    code, out, _ = _cli(server, alice, "models", "show", "digits")
    assert code == 0 and "digits (alice): 2 versions, aliases: champion=v1" in out, out
    assert re.search(rf"v2\s+{second}\s+None", out) and re.search(rf"v1\s+champion\s+{first}\s+None", out), out
    code, out, _ = _cli(server, alice, "models", "show", "digits", "--json")
    shown = json.loads(out)
    assert code == 0 and [(v["version"], v["job_id"], v["aliases"]) for v in shown["versions"]] == \
        [(2, int(second), []), (1, int(first), ["champion"])]
    # an unknown model, or another user's: the same clear error and exit code as any other "not found"
    with server.client() as c:
        bob = c.post("/users", json={"name": "bob-models", "no_isolation": True}).json()["token"]
    for token in (alice, bob):
        code, out, err = _cli(server, token, "models", "show", "nothing" if token == alice else "digits")
        assert code == 1 and out == "" and re.fullmatch(r"error: name: registered model '(nothing|digits)' not found\n",
                                                        err), err
    assert _cli(server, bob, "models", "--json")[1].count('"name"') == 0
