"""Count every status a payment attempt or a refund enters, whichever code moved it.

`post_init` remembers the status a row was loaded with; `post_save` counts it when it
changed. The transitions (`payments.transitions`) load the row they change under a lock
and save it, so each change is counted once, in the process that made it. Changes made
with `QuerySet.update` (holding an attempt open as unknown) are not saves: the
`payment_attempts_open` gauge, read from the database, shows those.
"""

from django.db.models.signals import post_init, post_save
from django.dispatch import receiver

from observability import metrics
from payments.models import Payment, Refund

_LOADED = "_observed_status"


@receiver(post_init, sender=Payment)
@receiver(post_init, sender=Refund)
def remember_status(sender, instance, **kwargs) -> None:
    instance.__dict__[_LOADED] = instance.__dict__.get("status")


@receiver(post_save, sender=Payment)
def count_payment(sender, instance: Payment, created: bool, **kwargs) -> None:
    if created or instance.status != instance.__dict__.get(_LOADED):
        metrics.observe_payment(
            status=instance.status,
            created=created,
            decline_code=instance.decline_code,
            error_code=instance.error_code,
        )
    instance.__dict__[_LOADED] = instance.status


@receiver(post_save, sender=Refund)
def count_refund(sender, instance: Refund, created: bool, **kwargs) -> None:
    if created or instance.status != instance.__dict__.get(_LOADED):
        metrics.observe_refund(status=instance.status, reason=instance.reason)
    instance.__dict__[_LOADED] = instance.status
