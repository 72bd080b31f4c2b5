"""Comparing jobs (services/compare.py, GET /compare, /compare.csv): in-process over the real app and a
real SQLite, jobs submitted through the API and their metrics stored through the supervisor's report path."""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelyard.config import Settings
from modelyard.db import jobs as store_jobs
from modelyard.db import reports
from modelyard.db.users import get_user_by_name
from modelyard.server.app import create_app, ensure_local_user
from modelyard.server.platform import Platform
from modelyard.services import compare as C


@dataclass
class App:
    client: TestClient
    platform: Platform
    headers: dict[str, str]

    def submit(self, **spec: object) -> dict:
        r = self.client.post("/api/v1/jobs", json={"spec": {"command": ["python", "train.py"], **spec}},
                             headers=self.headers)
        assert r.status_code == 201, r.text
        return r.json()

    def run(self, job_id: int, batches: list[list[list[object]]], *, exit_code: int = 0, t0: float = 1000.0) -> None:
        """The job placed, started at ``t0``, reporting ``batches`` of metric rows, then ending at ``t0 + 60``."""
        placed = store_jobs.place(self.platform.db, job_id, token=f"tok-{job_id}", executor="local", now=t0)
        assert placed is not None
        attempt = placed[1]
        events = [{"type": "started", "t": t0}]
        for seq, rows in enumerate(batches, start=1):
            assert reports.apply_report(self.platform.db, attempt, {"seq": seq, "metrics": rows, "events": events},
                                        now=t0).stored
            events = []
        end = {"type": "exited", "exit_code": exit_code, "reason": "exit_zero" if exit_code == 0 else "exit_nonzero",
               "t": t0 + 60}
        reports.apply_report(self.platform.db, attempt, {"seq": len(batches) + 1, "events": [end]}, now=t0 + 60)

    def get(self, path: str, token: str | None = None, **params: object):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {token}"} if token else self.headers
        return self.client.get(f"/api/v1{path}", params=params, headers=headers)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings.from_env({"MODELYARD_HOME": str(home), "MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G"})
    platform = Platform(settings, server_url="http://127.0.0.1:1")  # no lifespan: the scheduler never runs
    token = ensure_local_user(platform, home)
    client = TestClient(create_app(platform), raise_server_exceptions=False)
    try:
        yield App(client, platform, {"Authorization": f"Bearer {token}"})
    finally:
        client.close()
        platform.close()


def loss_rows(values: list[float], start: int = 0) -> list[list[object]]:
    return [["loss", v, start + i, None, 1000.0 + start + i] for i, v in enumerate(values)]


def test_compare_shows_params_spec_differences_metrics_and_durations(app: App) -> None:
    a = app.submit(name="a", params={"lr": 0.1, "opt": "adam"}, tags=["baseline"], env={"SEED": "1"},
                   resources={"cpus": 1})
    b = app.submit(name="b", params={"lr": 0.01, "opt": "adam", "warmup": True}, env={"SEED": "2"},
                   resources={"cpus": 2}, command="python train.py --lr 0.01")
    app.run(a["id"], [loss_rows([0.9, 0.5, 0.7]) + [["accuracy", 0.6, 2, None, 1002.0]]])
    app.run(b["id"], [loss_rows([0.8, 0.3]), loss_rows([0.3, 0.4], start=2)])

    r = app.get("/compare", ids=f"{a['id']},{b['id']}")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["ids"] == [a["id"], b["id"]]
    ja, jb = data["jobs"]
    assert (ja["name"], ja["state"], ja["owner"], ja["tags"], ja["attempts"]) == ("a", "succeeded", "local",
                                                                                 ["baseline"], 1)
    assert ja["params"] == {"lr": 0.1, "opt": "adam"} and jb["params"]["warmup"] is True
    assert ja["duration"] == pytest.approx(60.0) and ja["resources"]["cpus"] == 1
    assert data["params"] == {"names": ["lr", "opt", "warmup"], "differ": ["lr", "warmup"]}

    diffs = {d["field"]: d["values"] for d in data["spec_differences"]}
    assert diffs["resources.cpus"] == [1, 2] and diffs["env.SEED"] == ["1", "2"]
    assert diffs["command"] == [["python", "train.py"], "python train.py --lr 0.01"]
    assert not {"params", "tags", "name", "max_runtime", "resources.gpus"} & diffs.keys()  # shown elsewhere, or the same

    metrics = {m["name"]: m for m in data["metrics"]}
    loss = metrics["loss"]
    assert loss["best_mode"] == "min"
    assert loss["jobs"][0] == {"last": 0.7, "last_step": 2, "best": 0.5, "best_step": 1, "points": 3}
    # best over two stored chunks: the first point reaching 0.3 (step 1), not the tie in the second chunk
    assert loss["jobs"][1] == {"last": 0.4, "last_step": 3, "best": 0.3, "best_step": 1, "points": 4}
    assert metrics["accuracy"]["best_mode"] == "max"
    assert metrics["accuracy"]["jobs"] == [{"last": 0.6, "last_step": 2, "best": 0.6, "best_step": 2, "points": 1},
                                           None]


def test_tags_are_shown_as_they_are_now_after_edits(app: App) -> None:
    a = app.submit(name="a", tags=["baseline", "old"])
    r = app.client.post(f"/api/v1/jobs/{a['id']}/tags", json={"add": ["best"], "remove": ["old"]}, headers=app.headers)
    assert r.status_code == 200, r.text
    assert app.get("/compare", ids=str(a["id"])).json()["jobs"][0]["tags"] == ["baseline", "best"]


def test_a_running_jobs_duration_runs_to_now_and_an_unstarted_one_has_none(app: App) -> None:
    queued = app.submit(name="waiting")
    running = app.submit(name="running")
    placed = store_jobs.place(app.platform.db, running["id"], token="t", executor="local", now=1000.0)
    assert placed is not None
    reports.apply_report(app.platform.db, placed[1], {"seq": 1, "events": [{"type": "started", "t": 1000.0}]})
    user = get_user_by_name(app.platform.db, "local")
    data = C.compare(app.platform.db, user, [queued["id"], running["id"]], now=1090.0)
    assert [j["duration"] for j in data["jobs"]] == [None, pytest.approx(90.0)]
    assert data["metrics"] == [] and data["params"] == {"names": [], "differ": []}


def test_best_over_many_chunks_equals_numpy_over_the_whole_series(app: App) -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(size=3000)
    job = app.submit(name="long")
    batches = [[["val_error", float(v), 100 * k + i, None, 1000.0 + k] for i, v in enumerate(values[100 * k:100 * (k + 1)])]
               for k in range(30)]
    app.run(job["id"], batches)
    user = get_user_by_name(app.platform.db, "local")
    chunks = list(reports.iter_series(app.platform.db, job["id"], "val_error", rows=4))
    assert len(chunks) == 30  # read chunk by chunk, never as one array
    (m,) = C.compare(app.platform.db, user, [job["id"]])["metrics"]
    assert m["best_mode"] == "min"
    assert m["jobs"][0] == {"last": values[-1], "last_step": 2999, "best": values.min(),
                            "best_step": int(values.argmin()), "points": 3000}
    assert C.summarise(chunks, "max").best == values.max()


@pytest.mark.parametrize(("name", "mode"), [
    ("loss", "min"), ("val/loss", "min"), ("eval_error", "min"), ("top1_err", "min"), ("MSE", "min"), ("mae", "min"),
    ("perplexity", "min"), ("wer", "min"), ("accuracy", "max"), ("f1", "max"), ("reward", "max"),
])
def test_best_mode_follows_the_metric_name(name: str, mode: str) -> None:
    assert C.best_mode(name) == mode


def test_summarise_keeps_the_first_best_skips_empty_chunks_and_knows_missing_steps() -> None:
    nan = math.nan
    chunks = [np.array([[2.0, 1.0], [nan, nan], [nan, nan], [0.0, 1.0]]), np.empty((4, 0)),
              np.array([[1.0, 5.0], [7.0, 8.0], [nan, nan], [2.0, 3.0]])]
    s = C.summarise(chunks, "min")
    assert (s.best, s.best_step, s.last, s.last_step, s.points) == (1.0, None, 5.0, 8, 4)
    assert C.summarise([], "max") is None


def test_csv_has_one_row_per_job_with_params_and_metric_columns(app: App) -> None:
    a = app.submit(name="a", params={"lr": 0.1, "amp": True})
    b = app.submit(name="b", params={"lr": 0.01})
    app.run(a["id"], [loss_rows([0.9, 0.5])])
    r = app.get("/compare.csv", ids=f"{a['id']},{b['id']}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == f'attachment; filename="compare-{a["id"]}-{b["id"]}.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert list(rows[0]) == ["id", "name", "state", "owner", "duration", "param.amp", "param.lr", "loss.last",
                             "loss.best"]
    assert rows[0] == {"id": str(a["id"]), "name": "a", "state": "succeeded", "owner": "local", "duration": "60.000",
                       "param.amp": "true", "param.lr": "0.1", "loss.last": "0.5", "loss.best": "0.5"}
    assert rows[1] | {"id": ""} == {"id": "", "name": "b", "state": "queued", "owner": "local", "duration": "",
                                    "param.amp": "", "param.lr": "0.01", "loss.last": "", "loss.best": ""}


def test_the_json_download_is_the_same_data_as_a_file(app: App) -> None:
    a = app.submit(name="a")
    plain = app.get("/compare", ids=str(a["id"]))
    download = app.get("/compare", ids=str(a["id"]), download="true")
    assert download.headers["content-disposition"] == f'attachment; filename="compare-{a["id"]}.json"'
    assert "content-disposition" not in plain.headers
    assert {**download.json(), "jobs": None} == {**plain.json(), "jobs": None}


@pytest.mark.parametrize(("ids", "words"), [
    ("", "name the jobs"), (",", "name the jobs"), ("3,x", "'x' is not a job id"), ("0", "'0' is not a job id"),
    ("-1", "'-1' is not a job id"), ("²", "'²' is not a job id"), (str(2**60), "is not a job id"),
    (",".join(str(i) for i in range(1, 52)), "at most 50"),
])
def test_bad_ids_are_refused_naming_what_is_wrong(app: App, ids: str, words: str) -> None:
    for path in ("/compare", "/compare.csv"):
        r = app.get(path, ids=ids)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == "ids" and words in error["message"], error


def test_repeated_ids_count_once_and_a_missing_job_is_not_found(app: App) -> None:
    a = app.submit(name="a")
    assert app.get("/compare", ids=f"{a['id']},{a['id']}").json()["ids"] == [a["id"]]
    r = app.get("/compare", ids=f"{a['id']},999999")
    assert r.status_code == 404 and r.json()["error"]["message"] == "job 999999 not found"


def test_secret_values_never_show_only_their_mask(app: App) -> None:
    a = app.submit(name="a", secrets={"API_KEY": "hunter2-value"})
    b = app.submit(name="b")
    for path in ("/compare", "/compare.csv"):
        r = app.get(path, ids=f"{a['id']},{b['id']}")
        assert r.status_code == 200 and "hunter2-value" not in r.text
    diffs = {d["field"]: d["values"] for d in app.get("/compare", ids=f"{a['id']},{b['id']}").json()["spec_differences"]}
    assert diffs["secrets.API_KEY"] == ["***", None]
