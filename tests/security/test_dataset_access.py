"""Datasets belong to their creator: a plain user probes another user's private dataset through
every way in (API, web pages, a job's --dataset, restart, clone) and gets what a name nobody has
gets; a public one is readable and usable but neither removable nor appendable; a version's
``source`` never shows a server path to a non-admin; who did what is recorded."""
from __future__ import annotations

from pathlib import Path

import pytest
from dataset_helpers import Site, site, tar_of, upload
from test_datasets import make_npz

from modelyard.datasets import create_dataset


def create(s: Site, who: str, name: str, tmp_path: Path, *, n: int = 40, **extra: object) -> dict:
    data = tar_of(make_npz(tmp_path / f"{name}-{who}-{n}" / "d.npz", n=n))
    c = s.clients[who]
    r = c.post("/datasets", json={"name": name, "upload": upload(c, data), **extra})
    assert r.status_code == 201, r.text
    return r.json()


def submit(s: Site, who: str, dataset: str) -> object:
    return s.clients[who].post("/jobs", json={"spec": {"command": ["true"], "dataset": dataset}})


@pytest.fixture
def s(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    with site(tmp_path, database_url) as found:
        yield found


def test_another_users_private_dataset_answers_as_if_it_did_not_exist(s: Site, tmp_path: Path) -> None:
    v = create(s, "ann", "secret", tmp_path)
    assert v["ref"].startswith("secret:")
    ann, bob = s.clients["ann"], s.clients["bob"]
    path = v["files"][0]["path"]

    def same_as_unknown(method: str, url: str, unknown_url: str, **kw: object) -> None:
        r, u = bob.request(method, url, **kw), bob.request(method, unknown_url, **kw)
        assert r.status_code == 404, (method, url, r.text)
        assert r.json() == u.json() | {"error": {**u.json()["error"],
                                                 "message": u.json()["error"]["message"].replace("nosuch", "secret")}}

    assert [d["name"] for d in bob.get("/datasets").json()["datasets"]] == []
    same_as_unknown("GET", "/datasets/secret", "/datasets/nosuch")
    same_as_unknown("GET", f"/datasets/secret/{v['version']}", f"/datasets/nosuch/{v['version']}")
    same_as_unknown("GET", f"/datasets/secret/{v['version']}/files/{path}", f"/datasets/nosuch/{v['version']}/files/{path}")
    same_as_unknown("DELETE", "/datasets/secret", "/datasets/nosuch")
    same_as_unknown("DELETE", f"/datasets/secret/{v['version']}", f"/datasets/nosuch/{v['version']}")
    same_as_unknown("PATCH", "/datasets/secret", "/datasets/nosuch", json={"visibility": "public"})
    # adding a version under ann's name: refused before anything is read
    data = tar_of(make_npz(tmp_path / "bob" / "d.npz", n=12))
    r = bob.post("/datasets", json={"name": "secret", "upload": upload(bob, data)})
    assert r.status_code == 404, r.text
    # a job on it: the same answer as on a dataset nobody has
    for ref in ("secret", v["ref"]):
        r, u = submit(s, "bob", ref), submit(s, "bob", ref.replace("secret", "nosuch"))
        assert r.status_code == u.status_code == 422, r.text
        assert r.json()["error"]["field"] == "dataset"
        assert r.json()["error"]["message"] == u.json()["error"]["message"].replace("nosuch", "secret")
    assert bob.get("/jobs", params={"all": True}).json()["total"] == 0
    # the web pages
    web = s.web("bob")
    assert web.get("/ui/datasets/secret").status_code == 404
    assert "secret" not in web.get("/ui/datasets").text
    assert "secret" not in web.get("/ui/new").text
    # nothing changed: ann still has her one version, private
    mine = ann.get("/datasets/secret").json()
    assert [x["ref"] for x in mine["versions"]] == [v["ref"]] and mine["visibility"] == "private"
    assert mine["owner"] == "ann"
    # an admin sees and may change it
    admin = s.clients["admin"]
    assert [(d["name"], d["owner"]) for d in admin.get("/datasets").json()["datasets"]] == [("secret", "ann")]
    assert admin.get("/datasets/secret").status_code == 200
    assert submit(s, "admin", "secret").status_code == 201


def test_a_public_dataset_is_readable_and_usable_but_not_removable_or_appendable(s: Site, tmp_path: Path) -> None:
    v = create(s, "ann", "open", tmp_path, visibility="public")
    bob = s.clients["bob"]
    listed = bob.get("/datasets").json()["datasets"]
    assert [(d["name"], d["owner"], d["visibility"]) for d in listed] == [("open", "ann", "public")]
    shown = bob.get("/datasets/open").json()
    assert shown["owner"] == "ann" and shown["can_change"] is False
    f = v["files"][0]
    r = bob.get(f"/datasets/open/{v['version']}/files/{f['path']}")
    assert r.status_code == 200 and len(r.content) == f["size"]
    job = submit(s, "bob", "open")
    assert job.status_code == 201 and job.json()["dataset"] == v["ref"]
    for method, url, kw in [("DELETE", "/datasets/open", {}), ("DELETE", f"/datasets/open/{v['version']}", {}),
                            ("PATCH", "/datasets/open", {"json": {"visibility": "private"}})]:
        r = bob.request(method, url, **kw)
        assert r.status_code == 403, (url, r.text)
        assert r.json()["error"]["field"] == "dataset" and "ann" in r.json()["error"]["message"]
    data = tar_of(make_npz(tmp_path / "bob" / "d.npz", n=12))
    r = bob.post("/datasets", json={"name": "open", "upload": upload(bob, data)})
    assert r.status_code == 403, r.text
    assert [x["ref"] for x in bob.get("/datasets/open").json()["versions"]] == [v["ref"]]
    web = s.web("bob")
    page = web.get("/ui/datasets/open")
    assert page.status_code == 200 and "ann" in page.text
    assert "ann" in web.get("/ui/datasets").text

    # made private again: bob's job pinned to it may neither restart nor be cloned
    job_id = job.json()["id"]
    assert bob.post(f"/jobs/{job_id}/stop").status_code == 200
    r = s.clients["ann"].patch("/datasets/open", json={"visibility": "private"})
    assert r.status_code == 200 and r.json()["visibility"] == "private"
    assert bob.get("/datasets/open").status_code == 404
    r = bob.post(f"/jobs/{job_id}/restart")
    assert r.status_code == 422 and r.json()["error"]["field"] == "dataset", r.text
    assert bob.get(f"/jobs/{job_id}").json()["state"] == "stopped"
    r = bob.post(f"/jobs/{job_id}/clone", json={})
    assert r.status_code == 422 and r.json()["error"]["field"] == "dataset", r.text


def test_a_versions_source_shows_no_server_path_to_a_non_admin(s: Site, tmp_path: Path) -> None:
    v = create(s, "ann", "src", tmp_path, visibility="public")
    home = str(s.platform.settings.home)
    assert v["source"] == "upload"
    for who in ("ann", "bob"):
        c = s.clients[who]
        assert home not in c.get("/datasets/src").text
        assert home not in c.get(f"/datasets/src/{v['version']}").text
        assert home not in c.get("/datasets").text
        assert home not in s.web(who).get("/ui/datasets/src").text
    assert home in s.clients["admin"].get(f"/datasets/src/{v['version']}").json()["source"]
    # an error about an uploaded source names it as the client knows it, not by its server path
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.npz").write_bytes(b"not a zip")
    c = s.clients["ann"]
    r = c.post("/datasets", json={"name": "bad", "upload": upload(c, tar_of(bad)), "kind": "npz"})
    assert r.status_code == 422 and home not in r.text and "upload" in r.json()["error"]["message"], r.text


def test_who_created_and_removed_a_version_is_recorded_and_shown(s: Site, tmp_path: Path) -> None:
    first = create(s, "ann", "hist", tmp_path, n=20)
    second = create(s, "ann", "hist", tmp_path, n=30)
    admin = s.clients["admin"]
    assert admin.delete(f"/datasets/hist/{first['version']}").status_code == 200
    history = s.clients["ann"].get("/datasets/hist").json()["history"]
    assert [(e["action"], e["version"], e["actor"]) for e in history] == [
        ("created", first["version"], "ann"), ("created", second["version"], "ann"),
        ("removed", first["version"], "admin")]
    page = s.web("ann").get("/ui/datasets/hist").text
    assert 'data-action="removed"' in page and "admin" in page


def test_a_name_is_kept_by_its_owner_and_given_back_when_its_create_fails(s: Site, tmp_path: Path) -> None:
    bad = tmp_path / "empty"
    bad.mkdir()
    (bad / "x.npz").write_bytes(b"not a zip")
    bob = s.clients["bob"]
    assert bob.post("/datasets", json={"name": "taken", "upload": upload(bob, tar_of(bad)),
                                       "kind": "npz"}).status_code == 422
    create(s, "ann", "taken", tmp_path)  # bob's failed create did not keep the name
    assert s.clients["ann"].delete("/datasets/taken").status_code == 200
    create(s, "bob", "taken", tmp_path)  # removing every version gives the name back
    assert s.clients["bob"].get("/datasets/taken").json()["owner"] == "bob"


def test_a_dataset_from_before_owners_is_the_first_admins_and_private(s: Site, tmp_path: Path) -> None:
    p = s.platform
    old = create_dataset(p.storage, p.datasets, "old", str(make_npz(tmp_path / "old.npz")))
    assert s.clients["bob"].get("/datasets/old").status_code == 404
    assert submit(s, "bob", "old").status_code == 422
    shown = s.clients["admin"].get("/datasets/old").json()
    assert shown["owner"] == "admin" and shown["visibility"] == "private"
    assert s.clients["admin"].patch("/datasets/old", json={"visibility": "public"}).status_code == 200
    assert s.clients["bob"].get(f"/datasets/old/{old.version}").status_code == 200
    assert s.clients["bob"].delete("/datasets/old").status_code == 403
