"""A notebook job's rendered notebook (``/ui/jobs/{id}/notebook``) is the job's, so hostile: markdown and
outputs carrying ``<script>``, ``on*=`` handlers, ``javascript:`` links, SVG and JavaScript outputs render
without any of them; the document forbids scripts itself (CSP, sandbox) and its frame on the job page is
sandboxed; another user's notebook answers 404, a huge one is refused with a message. In-process: the
executed notebook is put in the store where a job's sync puts it."""
from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from auth_helpers import client, make_app, sign_in, user

from modelyard.artifacts.keys import attempt_output_prefix
from modelyard.services import notebooks

EVIL = [
    '<script>alert("md")</script>', '<img src=x onerror="alert(1)">', "[click](javascript:alert(2))",
    '<a href="javascript:alert(3)">a</a>', '<iframe src="https://evil.example"></iframe>',
    '<form action="https://evil.example"><input name=x></form>', '<img src="https://evil.example/pixel.png">',
    '<a href="data:text/html,<b>x</b>">d</a>', '<style>body { background: url(https://evil.example/) }</style>',
]
# what a notebook is made of still renders as markup: a DataFrame's table, an inline image
HARMLESS = ('<table class="dataframe"><thead><tr><th>lr</th></tr></thead><tbody><tr><td>0.1</td></tr></tbody></table>'
            '<img alt="plot" src="data:image/png;base64,iVBORw0KGgo=">')


def hostile_notebook() -> bytes:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print('hi')")
    cell.outputs = [
        nbformat.v4.new_output("display_data", {"text/html": "<b>bold</b>" + HARMLESS + "".join(EVIL)}),
        nbformat.v4.new_output("display_data", {"application/javascript": "alert('js')"}),
        nbformat.v4.new_output("display_data", {
            "image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(7)"><script>alert(8)</script></svg>'}),
        nbformat.v4.new_output("stream", name="stdout", text="<script>alert('stream')</script>\nvisible output\n"),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Report\n\nSome *text*.\n\n" + "\n".join(EVIL)), cell]
    return nbformat.writes(nb).encode()


class Elements(HTMLParser):
    """Every start tag with its attributes, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    app, platform = make_app(tmp_path_factory.mktemp("nbhtml"))
    owner, other = user(platform, "owner"), user(platform, "other")
    with client(app, token=owner) as c:
        # a string, as the new-job form sends what was typed: one .ipynb is a notebook, not a shell command
        r = c.post("/api/v1/jobs", json={"spec": {"command": "report.ipynb"}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        plain = c.post("/api/v1/jobs", json={"spec": {"command": ["python", "train.py"]}}).json()["id"]
    platform.storage.put_bytes(hostile_notebook(), f"{attempt_output_prefix(job_id, 1)}/report.ipynb")
    yield app, platform, owner, other, job_id, plain
    platform.close()


def test_scripts_handlers_and_javascript_links_are_not_rendered(app: tuple) -> None:
    fastapi_app, _, owner, _, job_id, _ = app
    with client(fastapi_app) as c:
        sign_in(c, owner)
        r = c.get(f"/ui/jobs/{job_id}/notebook")
    assert r.status_code == 200, r.text
    assert "visible output" in r.text and "<b>bold</b>" in r.text  # what is harmless is shown
    head, body = r.text.split("<main>", 1)  # the template's head has its own <style>s; the notebook is the body
    parser = Elements()
    parser.feed(body)
    tags = [t for t, _ in parser.tags]
    assert {"script", "iframe", "form", "input", "object", "embed", "svg", "style", "link"}.isdisjoint(tags), \
        sorted(set(tags))
    assert "<script" not in head and "<link" not in head  # nbconvert's require.js, MathJax, mermaid: left out
    assert {"h1", "p", "table", "th", "td"} <= set(tags)  # headings, paragraphs, tables are not escaped away
    assert ("img", {"alt": "plot", "src": "data:image/png;base64,iVBORw0KGgo="}) in parser.tags
    for tag, attrs in parser.tags:
        for name, value in attrs.items():
            assert not name.lower().startswith("on"), (tag, name, value)
            assert not (value or "").strip().lower().startswith("javascript:"), (tag, name, value)
            if name in ("src", "href") and tag != "a":
                assert (value or "").startswith(("data:", "#")), (tag, name, value)  # nothing is fetched


def test_the_document_forbids_scripts_and_is_framed_only_by_the_ui(app: tuple) -> None:
    fastapi_app, _, owner, _, job_id, _ = app
    with client(fastapi_app) as c:
        sign_in(c, owner)
        r = c.get(f"/ui/jobs/{job_id}/notebook")
        page = c.get(f"/ui/jobs/{job_id}")
    csp = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split("; ")}
    assert csp["default-src"] == ["'none'"] and "script-src" not in csp  # no script of any origin, inline or not
    assert csp["sandbox"] == [] and csp["frame-ancestors"] == ["'self'"]
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert page.status_code == 200
    frames = [a for t, a in _tags(page.text) if t == "iframe"]
    assert len(frames) == 1 and frames[0]["src"] == f"/ui/jobs/{job_id}/notebook"
    assert "sandbox" in frames[0] and not frames[0]["sandbox"]  # sandboxed, allowing nothing: no allow-scripts


def test_another_users_notebook_is_not_found(app: tuple) -> None:
    fastapi_app, _, _, other, job_id, _ = app
    with client(fastapi_app) as c:
        sign_in(c, other)
        r = c.get(f"/ui/jobs/{job_id}/notebook")
        assert r.status_code == 404 and "report" not in r.text and "visible output" not in r.text
        assert c.get(f"/ui/jobs/{job_id}/notebook", params={"format": "json"}).status_code == 404
    with client(fastapi_app) as anonymous:
        r = anonymous.get(f"/ui/jobs/{job_id}/notebook")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_no_notebook_a_huge_one_and_a_broken_one_get_a_message(app: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    fastapi_app, platform, owner, _, job_id, plain = app
    with client(fastapi_app) as c:
        sign_in(c, owner)
        r = c.get(f"/ui/jobs/{plain}/notebook")
        assert r.status_code == 404 and "not a .ipynb" in r.text
        assert "sandbox" in r.headers["content-security-policy"]
        monkeypatch.setattr(notebooks, "MAX_NOTEBOOK_BYTES", 1000)  # the cap, lowered: no 32 MiB file needed
        r = c.get(f"/ui/jobs/{job_id}/notebook")
        assert r.status_code == 413 and "not shown here: download it" in r.text
        monkeypatch.undo()
        platform.storage.put_bytes(b'{"cells": 3', f"{attempt_output_prefix(job_id, 2)}/report.ipynb")
        r = c.get(f"/ui/jobs/{job_id}/notebook")
        assert r.status_code == 422 and "is not a notebook" in r.text, r.text
        assert c.get(f"/ui/jobs/{job_id}/notebook", params={"attempt": 1}).status_code == 200  # attempt 1's is fine


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(html)
    return parser.tags
