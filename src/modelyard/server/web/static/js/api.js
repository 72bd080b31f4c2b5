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
