"""A notebook job's executed notebook as its job page shows it: nbconvert's HTML, sanitised, bounded.

Who may see it is the outputs' rule (services/outputs.py: the owner or an admin; anyone
else gets not found). What is shown is never trusted: nbconvert's sanitiser escapes
the HTML of markdown cells and outputs (``<script>``, ``on*=`` handlers, ``javascript:``
links, raw JavaScript outputs), the page's template adds no script of its own, and the
page answers with ``NOTEBOOK_CSP``: no script, no request anywhere, a sandbox even when
opened on its own.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.jobs.notebook import output_name
from modelyard.jobs.units import format_size
from modelyard.db import jobs as store_jobs
from modelyard.db.records import User
from modelyard.services.outputs import OutputService

MAX_NOTEBOOK_BYTES = 32 * 1024 * 1024  # read into memory and rendered whole: a bigger one is refused
# The rendered document's own policy: inline styles (nbconvert's) and data: images, nothing else;
# ``sandbox`` (without allow-scripts) holds it in a sandbox whether framed or opened directly.
NOTEBOOK_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox")
# nbconvert's lab template without the scripts it loads (require.js, MathJax, mermaid, widgets)
_render_lock = threading.Lock()
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block footer_js -%}{%- endblock footer_js -%}
"""


@dataclass(frozen=True)
class NotebookService:
    outputs: OutputService

    def notebook_of(self, user: User, job_id: int) -> str | None:
        """The path of the job's executed notebook among its outputs; None for a job that is no notebook."""
        return output_name(store_jobs.get_job(self.outputs.db, job_id, user=user).spec.command)

    def render(self, user: User, job_id: int, *, attempt: int | None = None) -> dict[str, Any]:
        """``{"path", "size", "html"}`` of the job's (or attempt ``attempt``'s) executed notebook."""
        path = self.notebook_of(user, job_id)
        if path is None:
            raise not_found(f"a notebook of job {job_id} (its command is not a .ipynb)")
        try:
            key, size = self.outputs.file_key(user, job_id, path, attempt=attempt)
        except ModelyardError as e:
            if e.code != ErrorCode.NOT_FOUND:
                raise
            raise not_found(f"{path} in the outputs of job {job_id} (outputs are copied every sync "
                            "interval and when the job ends)") from None
        if size > MAX_NOTEBOOK_BYTES:
            raise _too_large(path, size)
        with self.outputs.storage.open(key) as f:
            data = f.read(MAX_NOTEBOOK_BYTES + 1)  # bounded even if the file grew since it was listed
        if len(data) > MAX_NOTEBOOK_BYTES:
            raise _too_large(path, len(data))
        return {"path": path, "size": len(data), "html": to_html(data, path)}


def to_html(data: bytes, path: str) -> str:
    import nbformat

    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        with _render_lock:  # one exporter, whose preprocessors keep state while they run
            html, _ = _exporter().from_notebook_node(nb)
    except Exception as e:  # a job wrote this file: whatever nbformat or nbconvert make of it is a bad notebook
        raise ModelyardError(ErrorCode.INVALID, f"{path} is not a notebook nbconvert can show: "
                             f"{type(e).__name__}: {str(e)[:300]}") from None
    return str(html)


@functools.cache
def _exporter() -> Any:
    """One exporter: loading nbconvert's templates is most of a render's time."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", sanitize_html=True, template_file="modelyard_notebook.html.j2",
                        extra_loaders=[DictLoader({"modelyard_notebook.html.j2": _TEMPLATE})],
                        filters={"clean_html": clean_html})


def clean_html(element: str | bytes) -> str:
    """nbconvert's ``clean_html`` filter (bleach), allowing the markup notebooks are made of.

    nbconvert's own list escapes headings, paragraphs, images and table heads, so that
    a markdown cell or a DataFrame reads as tags (jupyter/nbconvert#2016). Still no script,
    style, form, frame or event handler; images only inline (``data:image/``), links
    only to http(s), mailto and anchors."""
    import bleach

    text = element.decode() if isinstance(element, bytes) else str(element)
    return str(bleach.clean(text, tags=ALLOWED_TAGS, attributes=_allowed_attribute,
                            protocols=["http", "https", "mailto", "data"]))


ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
    "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var",
})
_CELL_ATTRIBUTES = {"colspan", "rowspan", "align", "valign"}


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name in ("class", "id", "title"):
        return True
    if tag == "a" and name == "href":
        return value.startswith(("http://", "https://", "mailto:", "#"))
    if tag == "img":
        return name in ("alt", "width", "height") or (name == "src" and value.startswith("data:image/"))
    if tag in ("td", "th", "tr", "table"):
        return name in _CELL_ATTRIBUTES or (tag == "table" and name == "border")
    return tag == "ol" and name == "start"


def _too_large(path: str, size: int) -> ModelyardError:
    return ModelyardError(ErrorCode.TOO_LARGE, f"{path} is {format_size(size)}; notebooks over "
                          f"{format_size(MAX_NOTEBOOK_BYTES)} are not shown here: download it from the outputs")
