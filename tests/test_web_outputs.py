"""The job page's outputs: a restart that resumes, the attempt chooser, the Model box (final/)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from browser import (  # noqa: F401 (fixtures)
    browser, confirm_dialogs, goto_ready, job_state, page, playwright, server, submit,
)
from conftest import wait_for
from playwright.sync_api import Page, expect
from servers import ServerProcess

PY = sys.executable
DOCS = Path(__file__).resolve().parent.parent / "docs"
# Steps 0..5 with a checkpoint after each; attempt 1 dies at step 3, a later attempt goes on from
# the checkpoint in MODELYARD_RESUME_DIR and leaves its model in final/.
COUNTER = [PY, "-c", """\
import json, os, pathlib, sys
out = pathlib.Path(os.environ["MODELYARD_OUTPUT_DIR"])
attempt = int(os.environ["MODELYARD_ATTEMPT"])
resume = os.environ.get("MODELYARD_RESUME_DIR")
start = json.loads((pathlib.Path(resume) / "ckpt.json").read_text())["step"] + 1 if resume else 0
print("resumed at", start if resume else "-", flush=True)
for step in range(start, 6):
    print(json.dumps({"metric": "loss", "value": 1 / (step + 1), "step": step}), flush=True)
    (out / "ckpt.json").write_text(json.dumps({"step": step, "attempt": attempt}))
    if attempt == 1 and step == 3:
        sys.exit(3)
(out / "final").mkdir()
(out / "final" / "model.txt").write_text(f"trained to {step}")
"""]


def test_a_restart_that_resumes(page: Page, server: ServerProcess) -> None:
    job = submit(server, name="counter", command=COUNTER)
    with server.client() as c:
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] == "failed", timeout=60, what="attempt 1 fails")
    goto_ready(page, f"{server.url}/ui/jobs/{job['id']}")
    outputs = page.locator("#outputs")
    expect(outputs.locator(".outputs a", has_text="ckpt.json")).to_have_attribute(
        "href", f"/api/v1/jobs/{job['id']}/outputs/ckpt.json?attempt=1")
    expect(page.locator("#model")).to_have_count(0)  # attempt 1 left no model

    expect(page.locator("button[data-action=restart]")).to_have_attribute(
        "data-confirm", f"Run job #{job['id']} again as attempt 2? It resumes from attempt 1's outputs (MODELYARD_RESUME_DIR).")
    answers = confirm_dialogs(page)
    answers.append(True)
    page.click("button[data-action=restart]")
    expect(page.locator("#log .ln", has_text="resumed at 4")).to_have_count(1)  # attempt 2's log, followed
    job_state(page).to_have_attribute("data-state", "succeeded")

    # the Model box comes first, then the checkpoints, of the latest attempt
    model = outputs.locator("#model")
    expect(model.locator("a")).to_have_text(["model.txt"])
    expect(model.locator("a")).to_have_attribute("href", f"/api/v1/jobs/{job['id']}/outputs/final/model.txt?attempt=2")
    expect(outputs.locator("> ul.outputs a")).to_have_text(["ckpt.json"])
    chooser = page.locator("#outputs-attempt")
    expect(chooser.locator("option")).to_have_text(["latest (2)", "2", "1"])
    if os.environ.get("MODELYARD_SCREENSHOTS"):
        outputs.screenshot(path=str(DOCS / "outputs.png"))
    with page.expect_download() as download:
        model.locator("a").click()
    assert Path(download.value.path()).read_text() == "trained to 5"

    # attempt 1's outputs are still its own: its checkpoint at step 3, no model
    chooser.select_option("1")
    expect(model).to_have_count(0)
    link = outputs.locator(".outputs a", has_text="ckpt.json")
    expect(link).to_have_attribute("href", f"/api/v1/jobs/{job['id']}/outputs/ckpt.json?attempt=1")
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_text() == '{"step": 3, "attempt": 1}'
    # the choice outlives the page's own refreshes
    page.evaluate("""() => new Promise((settled) => {
        document.getElementById("outputs").dataset.stale = "yes";
        document.body.addEventListener("htmx:afterSettle", settled, { once: true });
        window.htmx.trigger("#job-live", "refresh");
    })""")
    expect(page.locator("#outputs")).not_to_have_attribute("data-stale", "yes")  # the refreshed part
    expect(page.locator("#outputs-attempt")).to_have_value("1")
    expect(page.locator("#model")).to_have_count(0)
    page.locator("#outputs-attempt").select_option("")
    expect(page.locator("#model a")).to_have_text(["model.txt"])
