from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    """Request ids, request logs and Prometheus metrics (see the package's modules)."""

    name = "observability"

    def ready(self) -> None:
        import utils
        from observability import metrics, signals  # noqa: F401  (connects the receivers)

        if metrics.observe_provider_attempt not in utils.ATTEMPT_OBSERVERS:
            utils.ATTEMPT_OBSERVERS.append(metrics.observe_provider_attempt)
