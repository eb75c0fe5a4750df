"""REST API: /api/v1 and the /api/v1.0 compatibility routes."""
