"""Query filters for the discount list: `?active=true&code=dis20` (code ignores case)."""

import django_filters

from discount.models import Discount, DiscountKind


class DiscountFilter(django_filters.FilterSet):
    # A choice, not a BooleanFilter: that one silently ignores `?active=maybe`.
    active = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")], method="filter_active"
    )
    code = django_filters.CharFilter(method="filter_code", max_length=64)
    kind = django_filters.ChoiceFilter(choices=DiscountKind.choices)

    class Meta:
        model = Discount
        fields = ("active", "code", "kind")

    def filter_active(self, queryset, name, value):
        return queryset.filter(active=value == "true")

    def filter_code(self, queryset, name, value):
        return queryset.with_code(value)
