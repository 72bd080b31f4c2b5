"""Parameters, tags and the jobs listing's filters through the API, in-process: what is recorded,
how bad input is refused (422, naming the query parameter), and that another user's jobs are
neither listed by any filter nor taggable."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from inproc import InProc, in_process


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProc]:
    with in_process(tmp_path_factory.mktemp("params") / "home") as ip:
        yield ip


def _submit(api: InProc, token: str, **spec: object) -> dict:
    r = api.client.post("/api/v1/jobs", json={"spec": {"command": ["python", "train.py", "--lr", "{lr}"], **spec}},
                        headers=api.auth(token))
    assert r.status_code == 201, r.text
    return r.json()


def _ids(api: InProc, token: str, **params: object) -> list[int]:
    r = api.client.get("/api/v1/jobs", params=params, headers=api.auth(token))
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()["jobs"]]


def test_params_and_tags_are_recorded_filtered_and_sorted(api: InProc) -> None:
    carol = api.new_user("carol")
    a = _submit(api, carol, params=["lr=0.1", "opt=adam"], tags=["baseline"])
    b = _submit(api, carol, params={"lr": 0.01, "opt": "sgd", "warm": True}, tags=["baseline", "big"])
    c = _submit(api, carol, name="no-params")
    assert a["params"] == {"lr": 0.1, "opt": "adam"} and a["tags"] == ["baseline"]
    assert b["params"]["warm"] is True and c["params"] == {} and c["tags"] == []
    assert _ids(api, carol, param="lr>=0.05") == [a["id"]]
    assert _ids(api, carol, param=["lr<=1", "opt=sgd"]) == [b["id"]]
    assert _ids(api, carol, tag=["baseline", "big"]) == [b["id"]]
    assert _ids(api, carol, state=["queued", "running"]) == [c["id"], b["id"], a["id"]]
    assert _ids(api, carol, sort="param:lr") == [b["id"], a["id"], c["id"]]
    assert _ids(api, carol, sort="-param:lr") == [a["id"], b["id"], c["id"]]
    assert _ids(api, carol, since="2000-01-01", until=str(2**40)) == [c["id"], b["id"], a["id"]]
    assert _ids(api, carol, since=str(2**40)) == []
    page = api.client.get("/api/v1/jobs", headers=api.auth(carol)).json()
    assert page["param_names"] == ["lr", "opt", "warm"]
    # clone: the source's parameters and tags, the clone's own over them
    r = api.client.post(f"/api/v1/jobs/{a['id']}/clone", json={"params": ["lr=0.5"], "tags": ["round2"]},
                        headers=api.auth(carol))
    assert r.status_code == 201, r.text
    assert r.json()["params"] == {"lr": 0.5, "opt": "adam"} and r.json()["tags"] == ["baseline", "round2"]


def test_tags_are_edited_by_the_owner(api: InProc) -> None:
    dave = api.new_user("dave")
    job = _submit(api, dave, tags=["a"])
    url = f"/api/v1/jobs/{job['id']}/tags"
    r = api.client.post(url, json={"add": ["b", "c"], "remove": ["a"]}, headers=api.auth(dave))
    assert r.status_code == 200 and r.json() == {"job_id": job["id"], "tags": ["b", "c"]}, r.text
    r = api.client.delete(f"{url}/b", headers=api.auth(dave))
    assert r.json()["tags"] == ["c"]
    assert api.client.get(f"/api/v1/jobs/{job['id']}", headers=api.auth(dave)).json()["tags"] == ["c"]
    assert _ids(api, dave, tag="c") == [job["id"]]
    r = api.client.post(url, json={"add": ["has space"]}, headers=api.auth(dave))
    assert r.status_code == 422 and r.json()["error"]["field"] == "tags", r.text
    # an admin may edit anyone's
    r = api.client.post(url, json={"add": ["checked"]}, headers=api.auth(api.admin))
    assert r.status_code == 200 and r.json()["tags"] == ["c", "checked"]


def test_another_users_jobs_are_not_listed_or_taggable(api: InProc) -> None:
    erin, frank = api.new_user("erin"), api.new_user("frank")
    job = _submit(api, erin, params=["lr=0.3"], tags=["erins"])
    for params in ({"owner": "erin"}, {"tag": "erins"}, {"param": "lr=0.3"}, {"owner": "erin", "all": "true"}):
        assert _ids(api, frank, **params) == [], params
    for method, url, body in [("POST", f"/api/v1/jobs/{job['id']}/tags", {"add": ["franks"]}),
                              ("POST", f"/api/v1/jobs/{job['id']}/tags", {"remove": ["erins"]}),
                              ("DELETE", f"/api/v1/jobs/{job['id']}/tags/erins", None)]:
        r = api.client.request(method, url, json=body, headers=api.auth(frank))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    assert api.client.get(f"/api/v1/jobs/{job['id']}", headers=api.auth(erin)).json()["tags"] == ["erins"]
    # an admin naming an owner sees that owner's jobs, without asking for all
    assert _ids(api, api.admin, owner="erin") == [job["id"]]


@pytest.mark.parametrize("params, field", [
    ({"param": "lr>>1"}, "param"), ({"param": "lr<adam"}, "param"), ({"param": "no-op"}, "param"),
    ({"tag": "bad tag"}, "tag"), ({"sort": "size"}, "sort"), ({"sort": "param:9x"}, "sort"),
    ({"since": "yesterday"}, "since"), ({"until": "soon"}, "until"), ({"state": "done"}, "state"),
    ({"param": "x" * 300}, "param"),
])
def test_a_bad_filter_is_a_422_naming_it(api: InProc, params: dict, field: str) -> None:
    r = api.client.get("/api/v1/jobs", params=params, headers=api.auth(api.admin))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert field in (error.get("field") or "") and error["code"] == "invalid", error


def test_bad_params_at_submit_and_clone_name_the_field(api: InProc, tmp_path: Path) -> None:
    r = api.client.post("/api/v1/jobs", json={"spec": {"command": ["true"], "params": ["lr"]}},
                        headers=api.auth(api.admin))
    assert r.status_code == 422 and "params" in r.json()["error"]["field"], r.text
    job = _submit(api, api.admin, params=["lr=1"])
    r = api.client.post(f"/api/v1/jobs/{job['id']}/clone", json={"params": ["lr"]}, headers=api.auth(api.admin))
    assert r.status_code == 422 and r.json()["error"]["field"] == "params", r.text
