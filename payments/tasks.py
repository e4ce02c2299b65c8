"""Background tasks of the payments app (Django's task framework, `django_tasks`).

    give_back_duplicate.enqueue(str(payment.pk))   # queued as a duplicate charge is recorded

The worker (`python manage.py run_worker`) runs them; `reconcile_payments` remains the
safety net for anything a task could not finish.
"""

from django_tasks import task

from common.errors import ApplicationError
from payments.models import Payment
from payments.provider import provider_api
from payments.reconcile import payment_give_back_duplicate


@task()
def give_back_duplicate(payment_id: str) -> str:
    """Refund a duplicate charge as `reconcile_payments` does (same function, same key)."""
    duplicate = Payment.objects.get(pk=payment_id)
    try:
        refund = payment_give_back_duplicate(duplicate=duplicate, api=provider_api())
    except ApplicationError as exc:  # provider trouble: reconcile gives it back later
        return f"not given back yet: {exc.code}"
    return f"refund {refund.status}" if refund else "nothing owed"
