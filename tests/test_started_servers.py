"""The API servers the tests start (gunicorn in tests/test_e2e.py, the browser and
metrics tests, `make run` in the dev runner test) inherit REDIS_URL when it is set, as in
CI's PostgreSQL pass, and so share one Redis with every other server of the run, the
workers of `pytest -n 2` included. Each counts its rate limits under a key prefix of its
own: the requests sent to one server never count against another server's limits (a
server started once for a module is its tests' alone)."""

import sys

from conftest import start_process

# Writes the rate-limit key prefix the settings give this process to the file named.
PRINT_PREFIX = """
import sys
import django
django.setup()
from django.conf import settings
with open(sys.argv[1], "w") as out:
    out.write(settings.CACHES["ratelimit"]["KEY_PREFIX"])
"""


def test_each_started_process_counts_its_rate_limits_under_a_prefix_of_its_own(tmp_path, settings):
    env = {
        "DJANGO_SETTINGS_MODULE": "CoreRoot.settings",
        "ENV": "DEV",
        "REDIS_URL": "redis://127.0.0.1:9/0",  # only read: the settings connect to nothing
    }
    files = [tmp_path / f"prefix-{n}" for n in range(2)]
    processes = [
        start_process([sys.executable, "-c", PRINT_PREFIX, str(file)], env=env) for file in files
    ]
    assert [process.wait(timeout=60) for process in processes] == [0, 0]

    prefixes = [file.read_text() for file in files]
    assert prefixes[0] != prefixes[1]
    assert all(prefix.startswith("ratelimit-") for prefix in prefixes)
    assert settings.CACHES["ratelimit"].get("KEY_PREFIX") not in prefixes  # nor this one's
