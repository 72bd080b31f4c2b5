// The one way the pages call /api/v1. The session cookie authenticates the
// request; the X-Modelyard-UI header tells the server it comes from these pages
// (see server/web/session.py), which a cross-site form cannot add.

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || null;
    this.field = err.field || null;
    this.details = err.details || [];
  }
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { "X-Modelyard-UI": "1", Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`/api/v1${path}`, {
    method, headers, signal, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) {
    if (res.status === 401) location.assign(`/ui/login?next=${encodeURIComponent(location.pathname)}`);
    throw new ApiError(res.status, data);
  }
  return data;
}

export const TERMINAL = new Set(["succeeded", "failed", "stopped", "timed_out", "lost"]);

/** POST a FormData to /api/v1``path`` with XMLHttpRequest, whose upload reports progress (fetch's
 * does not, in Chromium); ``onProgress(fraction)`` as the body goes out. Resolves to the JSON answer. */
export function upload(path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1${path}`);
    xhr.setRequestHeader("X-Modelyard-UI", "1");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.upload.addEventListener("load", () => onProgress(1));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else if (xhr.status === 401) location.assign(`/ui/login?next=${encodeURIComponent(location.pathname)}`);
      else reject(new ApiError(xhr.status, xhr.response));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { error: { message: "the upload failed: the connection broke" } })));
    xhr.send(formData);
  });
}
