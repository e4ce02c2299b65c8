"""Query filters for the cart list: `?payment_status=success&currency=usd`."""

import django_filters

from cart.models import Cart, PaymentStatus


class CartFilter(django_filters.FilterSet):
    payment_status = django_filters.ChoiceFilter(choices=PaymentStatus.choices)
    currency = django_filters.CharFilter(method="filter_currency", max_length=3)

    class Meta:
        model = Cart
        fields = ("payment_status", "currency")

    def filter_currency(self, queryset, name, value):
        return queryset.filter(currency=value.strip().upper())
