"""Hostile input at the API: every error in the documented form, numbers that overflow a column,
strictness, and each bound of README "Limits" refused with a 413 or 422 that names it."""
from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inproc import InProc, in_process

from modelyard.jobs import spec as S
from modelyard.jobs.patterns import MAX_PATTERN
from modelyard.server.body_limit import MAX_JSON_BODY
from modelyard.db import jobs as store_jobs

BIG = 2**63  # one past a 64-bit column: the 500s schemathesis found were all OverflowError


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProc]:
    with in_process(tmp_path_factory.mktemp("bounds") / "home") as ip:
        yield ip


def call(api: InProc, method: str, path: str, **kwargs: Any) -> Any:
    return api.client.request(method, f"/api/v1{path}", headers={**api.auth(api.admin), **kwargs.pop("headers", {})},
                              **kwargs)


def error(r: Any, status: int) -> dict[str, Any]:
    """The one error form, and nothing of FastAPI's own ``{"detail": ...}``."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "field"} <= set(body["error"]), body
    return body["error"]


def submit(api: InProc, **spec: Any) -> Any:
    return call(api, "POST", "/jobs", json={"spec": {"command": ["true"], **spec}})


# -- the error form ----------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), [
    ("GET", "/no/such/route", {}, 404, None),
    ("DELETE", "/jobs", {}, 405, None),
    ("POST", "/jobs", {"content": b'{"spec": {"command": ["x"]', "headers": {"Content-Type": "application/json"}},
     422, "body"),
    ("POST", "/jobs", {"content": b'{"spec": "\xff\xfe\x80"}', "headers": {"Content-Type": "application/json"}},
     422, "body"),
    ("POST", "/jobs", {"content": b'{"spec": {"command": ["x"]}}', "headers": {"Content-Type": "text/plain"}},
     422, "body"),
    ("POST", "/jobs", {"json": {"spec": {"command": [[["deep"]]], "resources": {"gpus": {"n": [1]}}}}},
     422, "spec.command.list[str].0"),
    ("POST", "/jobs", {"content": b'{"spec": {"command": ["x"], "name": "a\\ud800b"}}',  # a lone surrogate
                       "headers": {"Content-Type": "application/json"}}, 422, "spec"),
])
def test_every_error_has_the_documented_form(api: InProc, method: str, path: str, kwargs: dict[str, Any],
                                             status: int, field: str | None) -> None:
    err = error(call(api, method, path, **kwargs), status)
    assert err["field"] == field, err


def test_an_unknown_route_outside_the_api_is_in_our_form_too(api: InProc) -> None:
    assert error(api.client.get("/nothing-here"), 404)["code"] == "not_found"


# -- numbers and strictness --------------------------------------------------------------------

@pytest.mark.parametrize(("path", "field"), [
    (f"/jobs/{BIG}", "job_id"),
    (f"/jobs/{BIG * 10**20}/logs", "job_id"),
    (f"/jobs?offset={BIG}", "offset"),
    (f"/jobs/1/logs?attempt={BIG}", "attempt"),
    (f"/jobs/1/logs?offset={BIG}", "offset"),
    (f"/jobs/1/logs/size?attempt={BIG}", "attempt"),
    ("/jobs/0", "job_id"),
    ("/metrics/latest?jobs=%C2%B2", "jobs"),  # "²": str.isdigit() says yes, int() reads 2
    ("/metrics/latest?jobs=1,%D9%A3", "jobs"),  # Arabic-Indic three
    (f"/events/stream?after={BIG}", "after"),
])
def test_numbers_a_column_cannot_hold_are_bad_input_not_500(api: InProc, path: str, field: str) -> None:
    assert error(call(api, "GET", path), 422)["field"] == field


def test_metrics_latest_still_reads_a_plain_id_list(api: InProc) -> None:
    r = call(api, "GET", "/metrics/latest?jobs=1,2,")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("admin", [0, 1, "yes", "true", None])
def test_only_a_json_true_or_false_makes_an_admin(api: InProc, admin: object) -> None:
    r = call(api, "POST", "/users", json={"name": f"strict-{admin!s}".replace(" ", ""), "admin": admin})
    assert error(r, 422)["field"] == "admin"


def test_a_clone_resume_flag_is_strict_too(api: InProc) -> None:
    job = submit(api).json()
    assert error(call(api, "POST", f"/jobs/{job['id']}/clone", json={"resume": 1}), 422)["field"] == "resume"


def test_name_patterns_are_in_the_openapi(api: InProc) -> None:
    doc = api.client.get("/api/v1/openapi.json").json()
    user_name = doc["components"]["schemas"]["NewUser"]["properties"]["name"]
    assert user_name["pattern"] and user_name["maxLength"] == 100
    latest = next(p for p in doc["paths"]["/api/v1/metrics/latest"]["get"]["parameters"] if p["name"] == "jobs")
    assert latest["schema"]["pattern"].startswith("^([0-9]")
    job_id = doc["paths"]["/api/v1/jobs/{job_id}"]["get"]["parameters"][0]["schema"]
    assert job_id["minimum"] == 1 and job_id["maximum"] == 2**53
    assert error(call(api, "POST", "/users", json={"name": "ünïcode"}), 422)["field"] == "name"
    for path in ("/api/v1/datasets/{name}", "/api/v1/environments/{name}"):
        params = {p["name"]: p["schema"] for p in next(iter(doc["paths"][path].values()))["parameters"]}
        assert all(schema.get("pattern") for schema in params.values()), (path, params)


def test_every_operation_documents_its_errors_with_the_shared_schema(api: InProc) -> None:
    doc = api.client.get("/api/v1/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            errors = {s: r for s, r in op["responses"].items() if s.startswith(("4", "5"))}
            assert errors, f"{method} {path} documents no error"
            for status, r in errors.items():
                assert r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, \
                    (method, path, status)
            if path != "/api/v1/health":
                assert {"401", "422", "503"} <= set(errors), (method, path)
            if "{" in path and not path.startswith("/api/v1/attempts/"):
                assert "404" in errors, (method, path)


# -- bounds ----------------------------------------------------------------------------------

def jobs_count(api: InProc) -> int:
    user = type("U", (), {"id": 0, "is_admin": True})()
    return store_jobs.list_jobs(api.platform.db, user=user, all_users=True)[1]  # type: ignore[arg-type]


def test_a_body_over_the_limit_is_refused_before_it_is_stored(api: InProc) -> None:
    before = jobs_count(api)
    huge_env = {"BLOB": "x" * (20 * 1024 * 1024)}  # the 20 MB env of the issue
    err = error(submit(api, env=huge_env), 413)
    assert err["code"] == "too_large" and str(MAX_JSON_BODY) in err["message"]
    # without a Content-Length (chunked), counted as it streams
    chunks = (b'{"spec": {"command": ["true"], "env": {"A": "' + b"x" * 65536 for _ in range(20))
    err = error(call(api, "POST", "/jobs", content=chunks, headers={"Content-Type": "application/json"}), 413)
    assert str(MAX_JSON_BODY) in err["message"]
    assert jobs_count(api) == before


def test_streamed_uploads_are_not_held_to_the_json_limit(api: InProc) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = os.urandom(2 * MAX_JSON_BODY)  # incompressible: the .tar.gz stays over the JSON limit
        info = tarfile.TarInfo("weights.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert len(buf.getvalue()) > MAX_JSON_BODY
    r = call(api, "POST", "/snapshots", content=buf.getvalue())
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("spec", "field", "limit"), [
    ({"env": {f"V{i}": "x" * 30000 for i in range(3)}}, "spec.env", S.MAX_ENV_BYTES),
    ({"env": {"ONE": "x" * (S.MAX_ENV_VALUE_BYTES + 1)}}, "spec.env", S.MAX_ENV_VALUE_BYTES),
    ({"command": ["echo", "x" * S.MAX_COMMAND_BYTES]}, "spec.command", S.MAX_COMMAND_BYTES),
    ({"command": "echo " + "x" * S.MAX_COMMAND_BYTES}, "spec.command", S.MAX_COMMAND_BYTES),
    ({"command": ["true"] + ["a"] * S.MAX_COMMAND_ARGS}, "spec.command", S.MAX_COMMAND_ARGS),
    ({"webhooks": [f"https://hooks.example/{i}" for i in range(S.MAX_WEBHOOKS + 1)]}, "spec.webhooks",
     S.MAX_WEBHOOKS),
    ({"webhooks": ["https://hooks.example/" + "p" * S.MAX_WEBHOOK_URL]}, "spec.webhooks", S.MAX_WEBHOOK_URL),
    ({"name": "n" * (S.MAX_NAME + 1)}, "spec.name", S.MAX_NAME),
    ({"metric_patterns": [f"(?P<m{i}>x)" for i in range(S.MAX_METRIC_PATTERNS + 1)]}, "spec.metric_patterns",
     S.MAX_METRIC_PATTERNS),
    ({"metric_patterns": ["(?P<m>" + "x" * MAX_PATTERN + ")"]}, "spec.metric_patterns", MAX_PATTERN),
])
def test_each_spec_bound_is_a_422_naming_the_field_and_the_limit(api: InProc, spec: dict[str, Any], field: str,
                                                                 limit: int) -> None:
    before = jobs_count(api)
    err = error(submit(api, **spec), 422)
    assert err["field"] == field and str(limit) in err["message"], err
    assert jobs_count(api) == before


def test_a_spec_just_inside_every_bound_is_accepted(api: InProc) -> None:
    r = submit(api, command=["true"] + ["a"] * (S.MAX_COMMAND_ARGS - 1),
               env={"ONE": "x" * S.MAX_ENV_VALUE_BYTES, "TWO": "y" * (S.MAX_ENV_BYTES - S.MAX_ENV_VALUE_BYTES - 9)},
               webhooks=[f"https://hooks.example/{i}" for i in range(S.MAX_WEBHOOKS)], name="n" * S.MAX_NAME)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("spec", "field"), [
    ({"env": {"A\x00B": "1"}}, "spec.env"),
    ({"env": {"A": "1\x002"}}, "spec.env"),
    ({"command": ["echo", "a\x00b"]}, "spec.command"),
    ({"command": "echo a\x00b"}, "spec.command"),
])
def test_nul_bytes_are_refused_at_submit(api: InProc, spec: dict[str, Any], field: str) -> None:
    err = error(submit(api, **spec), 422)
    assert err["field"] == field and ("NUL" in err["message"] or "name" in err["message"]), err


def test_a_clone_is_held_to_the_same_bounds(api: InProc) -> None:
    job = submit(api).json()
    r = call(api, "POST", f"/jobs/{job['id']}/clone", json={"command": ["a"] * (S.MAX_COMMAND_ARGS + 1)})
    assert str(S.MAX_COMMAND_ARGS) in error(r, 422)["message"]


def test_a_job_stored_before_a_bound_still_loads(api: InProc, tmp_path: Path) -> None:
    """Bounds hold at submit; a row kept from before (here: written past them) still reads."""
    import orjson
    import sqlalchemy as sa

    from modelyard.db.schema import jobs as jobs_table

    job = submit(api).json()
    big = {"command": ["true"], "env": {"OLD": "x" * (S.MAX_ENV_VALUE_BYTES * 3)}}
    with api.platform.db.write() as conn:
        conn.execute(sa.update(jobs_table).where(jobs_table.c.id == job["id"]).values(spec=orjson.dumps(big).decode()))
    r = call(api, "GET", f"/jobs/{job['id']}")
    assert r.status_code == 200 and len(r.json()["env"]["OLD"]) == S.MAX_ENV_VALUE_BYTES * 3
