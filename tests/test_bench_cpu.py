"""The benchmark's CPU meter (bench/run.py `CpuMeter`) counts a gunicorn worker that
exits during a measured run (restarted by `max_requests`): its CPU is the API's, not
"others'", and what it used before the run is not counted again."""

import subprocess
import sys
import time

from bench.run import CpuMeter

# A master that starts one worker: the worker burns CPU, waits for a line, burns again
# and exits; the master reaps it (as gunicorn does) and says so.
MASTER = r"""
import subprocess, sys
WORKER = '''
import sys, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
burn(0.3)
print("ready", flush=True)
sys.stdin.readline()
burn(0.4)
'''
worker = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
worker.stdout.readline()
print("ready", flush=True)
sys.stdin.readline()
worker.stdin.write("go\n"); worker.stdin.flush()
worker.wait()
print("reaped", flush=True)
sys.stdin.readline()
"""


def test_a_worker_that_exits_during_the_run_is_counted_once():
    master = subprocess.Popen(
        [sys.executable, "-c", MASTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert master.stdout.readline().strip() == "ready"
        meter = CpuMeter({"api": master.pid}, None)
        before = meter.snapshot()
        master.stdin.write("go\n")
        master.stdin.flush()
        assert master.stdout.readline().strip() == "reaped"
        time.sleep(0.05)
        after = meter.snapshot()
        used = meter.use(before, after).seconds["api"]
        # The worker's 0.4 s after the first snapshot; not its 0.3 s before, not nothing.
        assert 0.3 <= used <= 0.6, used
    finally:
        master.stdin.write("end\n")
        master.stdin.flush()
        master.wait(timeout=10)
