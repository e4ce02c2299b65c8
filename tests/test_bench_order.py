"""The benchmark measures each endpoint and its limit row one right after the other, on
one server configuration and then the other: "ratio to limit" divides their two rates,
and on a shared VM the speed of a request moves within a minute (bench/run.py
`each_config_paired`)."""

import shutil
from types import SimpleNamespace

import pytest

from bench import run as bench


class _Seeder:
    """What the run asks of bench/seed.py, answered without a database."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, command: str, **kwargs) -> dict:
        if command == "carts" and "file" not in kwargs:
            self.rows += kwargs["count"]
        return {
            "info": {"version": "test"},
            "count": {"rows": self.rows},
            "verify_apply": {"passed": True},
            "verify_pay": {"passed": True},
        }.get(command, {})


class _OrderRecorded(bench.DatabaseRun):
    """A run whose measurements only record what was measured, where and in which order."""

    def __init__(self, configs: list[str]) -> None:
        opts = bench.parse_args(["--configs", ",".join(configs)])
        profiler = SimpleNamespace(names=())
        super().__init__("sqlite", opts, wrk=None, profiler=profiler, budget=60)
        self.seed = _Seeder()
        self.provider_url = "http://127.0.0.1:9"
        self.order: list[tuple[str, str]] = []

    def measure(self, name, script, config, **kwargs):
        if name == "bare" and self.results[config].get("bare"):
            return self.results[config]["bare"]  # measured again at the end: not recorded
        self.order.append((name, config))
        plan = bench.Attempt(ids=self.work / "ids", tag=f"{name}-{config}")
        result = SimpleNamespace(rps=100.0, plans=[plan], kept=plan, others_cpu=0, restarts=0)
        self.results[config][name] = result
        return result

    def reset_provider(self, session) -> None:
        pass

    def server_errors(self, config: str) -> str:
        return ""


@pytest.mark.parametrize("configs", [["sync", "prod"], ["prod"]])
def test_each_endpoint_is_measured_right_before_its_limit_row(monkeypatch, configs):
    monkeypatch.setattr(bench, "split_note", lambda results: "")
    run = _OrderRecorded(configs)
    try:
        run.run()
    finally:
        shutil.rmtree(run.work)

    order = run.order
    for endpoint, limit in bench.LIMITS.items():
        for config in configs:
            at = order.index((endpoint, config))
            assert order[at + 1] == (limit, config), order
    # Every scenario measured once per configuration (the provider once in all).
    measured = [name for name, _ in order]
    assert measured.count("provider") == 1
    assert measured.count("apply_discount") == measured.count("pay") == len(configs)
