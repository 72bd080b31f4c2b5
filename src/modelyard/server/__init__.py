"""The HTTP API (FastAPI, /api/v1), its streams and auth; the platform behind it."""
