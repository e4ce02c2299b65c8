"""Load benchmarks of the API under gunicorn: `python bench/run.py --db both`.

See bench/run.py and docs/benchmarks.md. Nothing here is imported by the app: the bare
endpoint lives in bench/urls.py and is served only with DJANGO_SETTINGS_MODULE=bench.settings.
"""
