"""Sweeps (README "Sweeps"): the spec, the driver over a real Optuna study on SQLite and PostgreSQL,
and, end to end, a real server killed mid-sweep, the CLI and the page.

The driver-level tests run the platform with an executor that starts nothing (no scheduler thread,
no driver thread): each pass is ``step_all()``, and a trial's job is placed, given metric points
through the one ingest path (db/runs.py) and ended through the store's own transitions, so every
state a trial goes through is one a real job goes through.
"""
from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from security.fuzz_server import RefusingExecutor

from modelyard.config import Settings
from modelyard.errors import ModelyardError
from modelyard.jobs import JobState, TerminationReason
from modelyard.jobs.sweep import SweepSpec
from modelyard.server.platform import Platform
from modelyard.services import sweeps as sweeps_service
from modelyard.services.sweep_engine import optuna_sqlite_url
from modelyard.db import jobs as store_jobs
from modelyard.db import runs
from modelyard.db.engine import MIGRATIONS, script_heads
from modelyard.db.users import get_user_by_name

METRIC = "loss"


@pytest.fixture
def platform(tmp_path: Path, database_url: str) -> Iterator[Platform]:
    yield from _platform(tmp_path, database_url)


@pytest.fixture
def sqlite_platform(tmp_path: Path) -> Iterator[Platform]:
    yield from _platform(tmp_path, f"sqlite:///{tmp_path / 'modelyard.db'}")


def _platform(tmp_path: Path, url: str) -> Iterator[Platform]:
    settings = Settings.from_env({"MODELYARD_HOME": str(tmp_path / "home"), "MODELYARD_DATABASE_URL": url,
                                  "MODELYARD_CAPACITY": "gpus=0,cpus=8,memory=8G"})
    p = Platform(settings, server_url="http://127.0.0.1:1", executor=RefusingExecutor(settings.capacity))
    p.create_user("alice", admin=False, no_isolation=True)
    try:
        yield p
    finally:
        p.close()


def _spec(**over: Any) -> SweepSpec:
    data: dict[str, Any] = {"name": "s", "job": {"command": "echo {x}"}, "metric": {"name": METRIC},
                            "parameters": {"x": {"values": [1, 2]}}, "method": "grid"}
    data.update(over)
    return SweepSpec.model_validate(data)


def _alice(p: Platform):  # type: ignore[no-untyped-def]
    user = get_user_by_name(p.db, "alice")
    assert user is not None
    return user


def _jobs(p: Platform, sweep_id: int) -> dict[int, Any]:
    from modelyard.db.sweeps import trial_jobs
    return trial_jobs(p.db, sweep_id)


def _active(p: Platform, sweep_id: int) -> list[Any]:
    return [j for j in _jobs(p, sweep_id).values() if not j.state.is_terminal()]


def _run(p: Platform, job_id: int, values: list[float], *, end: TerminationReason | None = TerminationReason.EXIT_ZERO) -> Any:
    """Place the job, store its points of METRIC at steps 0.., and end it with ``end`` (None: it runs on)."""
    placed = store_jobs.place(p.db, job_id, token=f"t-{job_id}", executor="local")
    assert placed is not None
    attempt = placed[1]
    points = [(METRIC, v, step, None, time.time()) for step, v in enumerate(values)]
    with p.db.write() as conn:
        runs.ingest(conn, job_id, attempt.id, runs.RunData(points=points))
    if end is not None:
        store_jobs.end_attempt(p.db, store_jobs.attempt_by_number(p.db, job_id, 1), end, exit_code=0)
    return attempt


def _drive(p: Platform, sweep_id: int, value_of: Any, *, max_parallel: int) -> None:
    """Pass after pass, end every trial in flight with ``value_of(params)``, until the sweep ends;
    never more than ``max_parallel`` trials in flight."""
    for _ in range(200):
        p.sweeps.step_all()
        if sweeps_service.show(p, _alice(p), sweep_id)["state"] != "running":
            return
        active = _active(p, sweep_id)
        assert 0 < len(active) <= max_parallel
        for job in active:
            _run(p, job.id, [value_of(job.spec.params)])
    raise AssertionError("the sweep did not end")


def test_spec_errors_name_the_field() -> None:
    bad = {
        "parameters.lr: low (2.0) must not be above high (1.0)": {"parameters": {"lr": {"low": 2.0, "high": 1.0}}},
        "parameters.lr: a grid needs a step for a float parameter, or values, and at most 10000 of them":
            {"parameters": {"lr": {"low": 0.1, "high": 1.0}}},
        "parameters.lr: step 1e-09 makes more than 10000 values between low and high":
            {"parameters": {"lr": {"low": 0.0, "high": 1.0, "step": 1e-9}}},
        "max_trials: a tpe search needs it (a grid ends when it is covered)": {"method": "tpe"},
        "metric.goal: Input should be 'minimize' or 'maximize'": {"metric": {"name": "l", "goal": "up"}},
        "parameters.lr: a log scale needs low > 0, not 0.0": {"method": "random", "max_trials": 3,
                                                             "parameters": {"lr": {"low": 0.0, "high": 1.0, "log": True}}},
    }
    for message, over in bad.items():
        data = {"job": {"command": "x"}, "metric": {"name": "l"}, "method": "grid",
                "parameters": {"x": {"values": [1]}}, **over}
        with pytest.raises(ValueError) as e:
            SweepSpec.from_yaml(json.dumps(data))
        assert str(e.value) == message
    bad_file = Path(__file__).parent / "data" / "no-such-sweep.yaml"
    from typer.testing import CliRunner

    from modelyard.cli.main import app
    result = CliRunner().invoke(app, ["sweep", "-f", str(bad_file)])
    assert result.exit_code == 1 and f"error: file: cannot read {bad_file}" in result.output
    ok = SweepSpec.from_yaml("job: {command: 'python t.py --lr {lr}'}\nmetric: {name: loss}\nmethod: grid\n"
                             "parameters:\n  lr: {low: 0.1, high: 0.3, step: 0.1}\n  n: {low: 1, high: 3}\n")
    assert ok.grid() == {"lr": [0.1, 0.2, 0.3], "n": [1, 2, 3]} and ok.trial_limit() == 9
    job = ok.trial_spec(7, 2, {"lr": 0.2, "n": 3})
    assert job.params == {"lr": 0.2, "n": 3} and "sweep-7" in job.tags and job.name == "sweep #2"


def test_optuna_keeps_out_of_our_migrations(platform: Platform) -> None:
    """Optuna's RDB storage stamps its own ``alembic_version``: ours must keep our head, and its tables
    live apart (PostgreSQL: the ``optuna`` schema; SQLite: a file beside ours)."""
    sweep = sweeps_service.create(platform, _alice(platform), _spec(), snapshot=None)
    head = script_heads(MIGRATIONS / "versions")
    assert len(head) == 1 and platform.db.revisions() == head
    with platform.db.read() as conn:
        ours = set(sa.inspect(conn).get_table_names())
        assert "studies" not in ours and "trials" not in ours and "version_info" not in ours
        if not platform.db.is_sqlite:
            theirs = set(sa.inspect(conn).get_table_names(schema="optuna"))
            revision = conn.execute(sa.text("SELECT version_num FROM optuna.alembic_version")).scalar_one()
    if platform.db.is_sqlite:
        side = sa.create_engine(optuna_sqlite_url(platform.db.url))
        with side.connect() as conn:
            theirs = set(sa.inspect(conn).get_table_names())
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        side.dispose()
    assert {"studies", "trials", "alembic_version"} <= theirs and revision not in head
    platform.db.migrate()  # still at our head: nothing to do, nothing broken
    assert platform.db.revisions() == head
    assert sweep["state"] == "running" and sweep["trials"] == []
    if platform.db.is_sqlite:  # Optuna's own tools open it by the file and the name the README gives
        import optuna
        assert sweep["study"] == f"modelyard-sweep-{sweep['id']}"
        assert optuna.load_study(study_name=sweep["study"], storage=optuna_sqlite_url(platform.db.url)).trials == []


def test_grid_covers_every_combination_once(platform: Platform) -> None:
    spec = _spec(parameters={"x": {"values": [1, 2]}, "y": {"low": 0.5, "high": 1.5, "step": 0.5}}, parallel=2)
    sweep = sweeps_service.create(platform, _alice(platform), spec, snapshot=None)
    _drive(platform, sweep["id"], lambda p: p["x"] * 10 + p["y"], max_parallel=2)
    shown = sweeps_service.show(platform, _alice(platform), sweep["id"])
    seen = sorted((t["params"]["x"], t["params"]["y"]) for t in shown["trials"])
    assert seen == sorted(itertools.product([1, 2], [0.5, 1.0, 1.5]))
    jobs = _jobs(platform, sweep["id"])
    assert sorted(jobs) == list(range(6)) and all(j.sweep_id == sweep["id"] and "sweep-%d" % sweep["id"] in j.spec.tags
                                                 for j in jobs.values())
    assert shown["state"] == "succeeded" and shown["best"]["params"] == {"x": 1, "y": 0.5}
    assert shown["best_job_id"] == jobs[shown["best"]["number"]].id and shown["best"]["value"] == 10.5
    assert {t["state"] for t in shown["trials"]} == {"complete"}


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_random_and_tpe_respect_bounds_and_limits(sqlite_platform: Platform, method: str) -> None:
    p = sqlite_platform
    spec = _spec(method=method, max_trials=5, parallel=2, seed=3, metric={"name": METRIC, "goal": "maximize"}, parameters={
        "lr": {"low": 1e-4, "high": 1e-1, "log": True}, "n": {"low": 2, "high": 10, "step": 2},
        "opt": {"values": ["adam", "sgd"]}})
    sweep = sweeps_service.create(p, _alice(p), spec, snapshot=None)
    _drive(p, sweep["id"], lambda params: params["n"] * params["lr"], max_parallel=2)
    trials = sweeps_service.show(p, _alice(p), sweep["id"])["trials"]
    assert len(trials) == 5 and len(_jobs(p, sweep["id"])) == 5
    for t in trials:
        assert 1e-4 <= t["params"]["lr"] <= 1e-1 and t["params"]["n"] in (2, 4, 6, 8, 10)
        assert t["params"]["opt"] in ("adam", "sgd")


def test_median_pruner_stops_a_bad_trial(platform: Platform) -> None:
    spec = _spec(parameters={"x": {"values": [1, 2, 3]}}, parallel=1,
                 early_stopping={"type": "median", "startup_trials": 1})
    sweep_id = sweeps_service.create(platform, _alice(platform), spec, snapshot=None)["id"]
    for good in range(2):
        platform.sweeps.step_all()
        (job,) = _active(platform, sweep_id)
        _run(platform, job.id, [1.0, 0.8, 0.6, 0.5])
    platform.sweeps.step_all()
    (bad,) = _active(platform, sweep_id)
    _run(platform, bad.id, [5.0, 5.0, 5.0], end=None)  # clearly worse at every step, and still running
    platform.sweeps.step_all()
    assert store_jobs.get_job(platform.db, bad.id).state is JobState.STOPPING  # asked to stop
    store_jobs.end_attempt(platform.db, store_jobs.attempt_by_number(platform.db, bad.id, 1),
                           TerminationReason.STOPPED_BY_USER, exit_code=-15)
    platform.sweeps.step_all()
    job = store_jobs.get_job(platform.db, bad.id)
    assert job.state is JobState.STOPPED and job.message == f"pruned by sweep {sweep_id} at step 2"
    shown = sweeps_service.show(platform, _alice(platform), sweep_id)
    assert [t["state"] for t in shown["trials"]] == ["complete", "complete", "pruned"]
    assert shown["state"] == "succeeded"


def test_successive_halving_stops_a_trial_below_its_rung(sqlite_platform: Platform) -> None:
    """Optuna's successive-halving pruner records each trial's rungs as it is asked, so the driver asks
    it of every trial with new points, ended ones too; a trial that is pruned still holds its place
    among those in flight until its job has stopped."""
    p = sqlite_platform
    spec = _spec(parameters={"x": {"values": [1, 2, 3, 4, 5]}}, parallel=1,
                 early_stopping={"type": "successive_halving", "min_steps": 1, "reduction_factor": 2})
    sweep_id = sweeps_service.create(p, _alice(p), spec, snapshot=None)["id"]
    for values in ([1.0, 0.8, 0.6, 0.5], [1.1, 0.9, 0.7, 0.6], [1.2, 0.9, 0.7, 0.6]):
        p.sweeps.step_all()
        (job,) = _active(p, sweep_id)
        _run(p, job.id, values)
    p.sweeps.step_all()
    (bad,) = _active(p, sweep_id)
    _run(p, bad.id, [9.0, 9.0, 9.0, 9.0], end=None)
    p.sweeps.step_all()
    assert store_jobs.get_job(p.db, bad.id).state is JobState.STOPPING
    assert [t["state"] for t in sweeps_service.show(p, _alice(p), sweep_id)["trials"]] == ["complete"] * 3 + ["pruned"]
    store_jobs.end_attempt(p.db, store_jobs.attempt_by_number(p.db, bad.id, 1), TerminationReason.STOPPED_BY_USER,
                           exit_code=-15)
    p.sweeps.step_all()  # now the last trial
    assert len(_active(p, sweep_id)) == 1 and store_jobs.get_job(p.db, bad.id).message.startswith("pruned by")


def test_stopping_a_sweep_stops_its_trials(platform: Platform) -> None:
    spec = _spec(method="random", max_trials=6, parallel=2, parameters={"x": {"low": 0, "high": 9}})
    sweep_id = sweeps_service.create(platform, _alice(platform), spec, snapshot=None)["id"]
    platform.sweeps.step_all()
    first, second = _active(platform, sweep_id)
    _run(platform, first.id, [1.0], end=None)  # one running, one still queued
    shown = sweeps_service.stop(platform, _alice(platform), sweep_id)
    assert shown["state"] == "stopped" and shown["message"] == "stopped by alice"
    assert store_jobs.get_job(platform.db, first.id).state is JobState.STOPPING
    assert store_jobs.get_job(platform.db, second.id).state is JobState.STOPPED
    assert {t["state"] for t in shown["trials"]} == {"failed"}
    platform.sweeps.step_all()
    assert len(_jobs(platform, sweep_id)) == 2  # no trial is asked after the stop
    with pytest.raises(ModelyardError) as e:
        sweeps_service.stop(platform, _alice(platform), sweep_id)
    assert e.value.message == f"sweep {sweep_id} has already ended (stopped)"


def test_a_trial_has_one_job_and_an_asked_trial_gets_its_job(platform: Platform) -> None:
    """What a restart between Optuna's ask and the job's submit leaves: a trial with no job. The next pass
    gives it its job, with its own parameters; a second job for one trial is refused in the job's own
    transaction (the unique index on jobs(sweep_id, trial))."""
    spec = _spec(method="random", max_trials=2, parallel=1, parameters={"x": {"low": 0, "high": 1000}})
    sweep = sweeps_service.create(platform, _alice(platform), spec, snapshot=None)
    from modelyard.db.sweeps import get_sweep
    study = platform.sweeps.study(get_sweep(platform.db, sweep["id"]))
    asked = study.ask(fixed_distributions={"x": __import__("optuna").distributions.IntDistribution(0, 1000)})
    platform.sweeps.step_all()
    jobs = _jobs(platform, sweep["id"])
    assert list(jobs) == [asked.number] and jobs[asked.number].spec.params == {"x": asked.params["x"]}
    with pytest.raises(ModelyardError) as e:
        platform.submit(_alice(platform), jobs[0].spec, snapshot=None, trial_of=(sweep["id"], 0))
    assert e.value.field == "trial"
    assert len(_jobs(platform, sweep["id"])) == 1


# -- end to end: a real server, real jobs, killed mid-sweep ------------------------------------------

TRAIN = (
    "import json, os, sys, time\n"
    "x = json.loads(os.environ['MODELYARD_PARAMS'])['x']\n"
    "print(json.dumps({'metric': 'loss', 'value': (x - 2) ** 2 + 1.0, 'step': 0}), flush=True)\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.02)\n"  # the test kills the server meanwhile
    "print(json.dumps({'metric': 'loss', 'value': (x - 2) ** 2, 'step': 1}), flush=True)\n"
)


def test_a_server_killed_mid_sweep_resumes_it_with_every_trial_once(tmp_path: Path) -> None:
    import signal
    import sys

    from conftest import wait_for
    from servers import ServerProcess, ui_sign_in
    from typer.testing import CliRunner

    from modelyard.cli.main import app

    def cli(args: list[str], env: dict[str, str]) -> Any:
        """The CLI in this process (a subprocess would import modelyard again for each command)."""
        return CliRunner().invoke(app, args, env=env, catch_exceptions=False)

    work, release = tmp_path / "work", tmp_path / "release"
    work.mkdir()
    (work / "train.py").write_text(TRAIN)
    (work / "sweep.yaml").write_text(json.dumps({
        "name": "e2e", "method": "grid", "parallel": 2, "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": [0, 1, 2, 3]}},
        "job": {"command": [sys.executable, "train.py", str(release)], "resources": {"cpus": 0.5}}}))
    env = {"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G", "MODELYARD_HEARTBEAT_TIMEOUT": "30",
           "MODELYARD_STOP_GRACE": "2"}
    srv = ServerProcess(tmp_path / "home", env=env).start()
    cli_env = {"MODELYARD_HOME": str(tmp_path / "client"), "MODELYARD_URL": srv.url, "MODELYARD_TOKEN": srv.token,
               "COLUMNS": "200"}
    made = cli(["sweep", "-f", str(work / "sweep.yaml"), "--json"], cli_env)
    assert made.exit_code == 0, made.output
    sweep_id = json.loads(made.stdout)["id"]
    c = srv.client()

    def reported() -> bool:
        trials = c.get(f"/sweeps/{sweep_id}").json()["trials"]
        return len(trials) == 2 and all(t["last"] is not None for t in trials)

    wait_for(reported, 60, what="two trials running, each with its first point")
    srv.kill(signal.SIGKILL)
    c.close()
    release.touch()
    restarted = ServerProcess(tmp_path / "home", env=env, port=srv.port).start()
    try:
        with restarted.client() as c2:
            wait_for(lambda: c2.get(f"/sweeps/{sweep_id}").json()["state"] != "running", 90, what="the sweep to end")
            shown = c2.get(f"/sweeps/{sweep_id}").json()
            assert shown["state"] == "succeeded", shown
            assert [t["number"] for t in shown["trials"]] == [0, 1, 2, 3]
            assert sorted(t["params"]["x"] for t in shown["trials"]) == [0, 1, 2, 3]
            jobs = c2.get("/jobs", params={"tag": f"sweep-{sweep_id}", "limit": 100}).json()["jobs"]
            assert sorted(j["id"] for j in jobs) == sorted(t["job_id"] for t in shown["trials"])  # one job each
            assert all(j["state"] == "succeeded" and j["attempt"] == 1 and j["sweep_id"] == sweep_id for j in jobs)
            assert sorted(j["trial"] for j in jobs) == [0, 1, 2, 3]
            assert shown["best"]["params"] == {"x": 2} and shown["best"]["value"] == 0.0
            assert shown["best_job_id"] == shown["best"]["job_id"]

        show = cli(["sweep", "show", str(sweep_id)], cli_env)
        assert show.exit_code == 0, show.output
        assert f"sweep {sweep_id} e2e: succeeded" in show.stdout
        assert f"best: trial {shown['best']['number']} (job {shown['best_job_id']}), loss = 0, x=2" in show.stdout
        listed = cli(["sweeps"], cli_env)
        assert listed.exit_code == 0 and "e2e" in listed.stdout and "succeeded" in listed.stdout

        import httpx
        with httpx.Client(base_url=restarted.url, timeout=30) as browser:
            assert ui_sign_in(browser, restarted.token).status_code in (200, 303)
            page = browser.get(f"/ui/sweeps/{sweep_id}")
            assert page.status_code == 200
            assert f'href="/ui/jobs/{shown["best_job_id"]}">job #{shown["best_job_id"]}</a>' in page.text
            assert page.text.count('<tr data-trial="') == 4 and 'id="scatter"' in page.text
            assert browser.get(f"/ui/sweeps/{sweep_id}", params={"format": "json"}).json()["trials"] == shown["trials"]
            assert f'href="/ui/sweeps/{sweep_id}"' in browser.get("/ui/sweeps").text
            assert browser.get("/ui/sweeps/999999").status_code == 404
            trial_page = browser.get(f"/ui/jobs/{shown['best_job_id']}").text
            assert f'<a href="/ui/sweeps/{sweep_id}">trial {shown["best"]["number"]} of sweep {sweep_id}</a>' in trial_page

        from browser import CHROMIUM, CHROMIUM_ARGS, sign_in
        from playwright.sync_api import sync_playwright
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = sign_in(chromium, restarted, restarted.token)
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{restarted.url}/ui/sweeps/{sweep_id}")
                page.wait_for_selector("html[data-ready=true]")
                # one scatter (the one parameter), a point for each trial, at its x and objective
                drawn = page.evaluate("window.modelyard.sweepCharts.map((u) => u.data)")
                assert drawn == [[[0, 1, 2, 3], [4, 1, 0, 1]]] and not errors
                _check_parallel_coordinates(page, restarted.url, shown)
                assert not errors
            finally:
                chromium.close()
    finally:
        restarted.stop()


def _check_parallel_coordinates(page: Any, url: str, shown: dict[str, Any]) -> None:
    """The sweep page's parallel coordinates (static/js/pcoords.js), on the page the e2e test opened:
    an axis per parameter and the objective's last, a line per finished trial linking to its job,
    the better end of the objective on top; then the module itself on a space with a log and a string
    parameter, a goal to maximise and a pruned and a failed trial; and a phone's width."""
    svg = page.locator("#pcoords svg.pcoords")
    assert svg.get_attribute("role") == "img" and "4 finished trials" in (svg.get_attribute("aria-label") or "")
    assert page.eval_on_selector_all("#pcoords g.axis", "gs => gs.map((g) => g.dataset.axis)") == ["x", "loss"]
    lines = page.eval_on_selector_all("#pcoords a[data-trial]", """as => as.map((a) => [Number(a.dataset.trial),
        a.getAttribute('href'), a.querySelector('path').classList.contains('best'),
        Number(a.querySelector('path').getAttribute('d').split(',').pop()), a.querySelector('title').textContent])""")
    by_trial = {n: (href, best, y, title) for n, href, best, y, title in lines}
    assert len(lines) == len(by_trial) == 4
    for t in shown["trials"]:
        href, best, _, title = by_trial[t["number"]]
        assert href == f"/ui/jobs/{t['job_id']}" and best == (t["number"] == shown["best"]["number"])
        assert title == f"trial {t['number']}: x = {t['params']['x']}, loss = {t['value']:g}"
    # minimised: the lower the loss, the higher its line ends (a smaller y), the best at the very top
    ends = sorted((t["value"], by_trial[t["number"]][2]) for t in shown["trials"])
    assert ends[0][1] < ends[1][1] == ends[2][1] < ends[3][1]
    page.click(f"#pcoords a[data-trial='{shown['best']['number']}'] path")
    page.wait_for_url(f"{url}/ui/jobs/{shown['best_job_id']}")

    made = page.evaluate("""async () => {
        const { drawParallel } = await import('/ui/static/js/pcoords.js');
        const box = document.createElement('div');
        document.body.append(box);
        const t = (number, state, value, lr, opt) => ({ number, state, value, job_id: 100 + number, params: { lr, opt } });
        const svg = drawParallel(box, { metric: 'acc', goal: 'maximize', parameters: ['lr', 'opt'],
          space: { lr: { type: 'float', low: 1e-4, high: 1e-2, log: true }, opt: { type: 'categorical', values: ['sgd', 'adam', '<img src=x onerror=alert(1)>'] } },
          trials: [t(0, 'complete', 0.5, 1e-3, 'adam'), t(1, 'complete', 0.9, 1e-2, '<img src=x onerror=alert(1)>'), t(2, 'pruned', null, 1e-4, 'sgd'),
                   t(3, 'failed', null, 1e-3, 'sgd'), t(4, 'running', null, 1e-3, 'sgd')] });
        const ys = (n) => svg.querySelector(`a[data-trial="${n}"] path`).getAttribute('d').slice(1).split('L').map((p) => Number(p.split(',')[1]));
        const lines = [...svg.querySelectorAll('a[data-trial]')].map((a) => [Number(a.dataset.trial), a.querySelector('path').getAttribute('class')]);
        const ticks = [...svg.querySelectorAll('g.axis')].map((g) => [...g.querySelectorAll('.tick-label')].map((e) => e.textContent));
        box.remove();
        const title = svg.querySelector('a[data-trial="1"] title').textContent;
        return { lines, ticks, title, img: svg.querySelector('img') !== null, y0: ys(0), y1: ys(1), y2: ys(2),
                 note: svg.querySelector('.axis-note').textContent };
    }""")
    # the faint ones first (under the rest), then worst to best; a running trial is not drawn
    assert made["lines"] == [[2, "faint"], [3, "faint"], [0, "trial"], [1, "trial best"]]
    assert made["ticks"][:2] == [["0.0001", "0.001", "0.01"], ["sgd", "adam", "<img src=…"]]
    # a categorical value is text, never markup
    assert made["title"] == "trial 1: lr = 0.01, opt = <img src=x onerror=alert(1)>, acc = 0.9" and not made["img"]
    top, bottom = made["y1"][0], made["y2"][0]  # lr's axis, log scale: 1e-3 halfway between 1e-4 and 1e-2
    assert made["y0"][0] == pytest.approx((top + bottom) / 2, abs=0.2) and made["y0"][1] == made["y0"][0]
    assert made["y1"][2] < made["y0"][2] and made["note"] == "highest on top"  # maximised: the best on top
    assert len(made["y2"]) == 2  # a pruned trial has no objective: its line stops at the last parameter

    page.set_viewport_size({"width": 390, "height": 800})  # and at a phone's width
    page.go_back()
    page.wait_for_selector("#pcoords svg.pcoords")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing spills sideways
