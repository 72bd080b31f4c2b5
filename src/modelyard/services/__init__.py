"""Services: one per domain, what the API routes and the web pages both call."""
