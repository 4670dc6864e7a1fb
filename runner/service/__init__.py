"""The HTTP service: routes, the auth gate, the launcher of runs, and the gunicorn wiring."""
