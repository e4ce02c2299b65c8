from django.apps import AppConfig


class DiscountConfig(AppConfig):
    name = "discount"
    verbose_name = "Discounts"
