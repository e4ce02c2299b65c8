"""Settings for benchmark runs: the app's own settings, plus the bare endpoint's URL.

    DJANGO_SETTINGS_MODULE=bench.settings gunicorn ... CoreRoot.wsgi

Everything the real endpoints run (middleware, authentication, permissions, renderers,
database options) is exactly CoreRoot.settings, read from the same environment variables
(DATABASE_URL, FAKE_PAYMENT_API, PAYMENT_API_*, DB_CONN_MAX_AGE; bench/run.py sets ENV=DEV
and DEBUG=false). Only ROOT_URLCONF changes, so `/bench/bare/` exists in benchmark runs
and nowhere else.
"""

from CoreRoot.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
