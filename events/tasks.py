"""Background tasks of the events app (Django's task framework, `django_tasks`).

    deliver_event.enqueue(str(event.pk))    # events.services queues it on commit

The worker (`python manage.py run_worker`) runs them; the logic is in `events.services`.
"""

from django_tasks import task

from events.services import event_deliver


@task()
def deliver_event(event_id: str) -> str:
    """Deliver one event to the shop (one try; a failed try queues the next)."""
    delivery = event_deliver(event_id=event_id)
    if delivery is None:
        return "skipped: delivered, not due, or being delivered elsewhere"
    return f"try {delivery.attempt}: {delivery.status_code or delivery.error}"
