"""The soak test: a mixed load against the API under gunicorn with provider faults.

Run it with `python soak/run.py` (see `soak/run.py` and `docs/soak.md`).
"""
