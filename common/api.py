"""How every endpoint reads and writes JSON, and how lists are paged.

- `DecimalJSONParser` parses JSON numbers with a fraction into `Decimal`, so 10.10 stays
  10.10 instead of becoming the float 10.0999999…; integers stay `int`.
- `DecimalJSONRenderer` writes `Decimal` as an exact JSON number (15.00, not 15.0 and
  not "15.00"): DRF's own renderer goes through float.
- `NewestFirstCursorPagination` pages by a cursor on `created`: each page costs one
  indexed range query whatever the table size (no OFFSET, no COUNT), and rows inserted
  while a client pages never shift or repeat items.

Settings wire them in as DRF defaults:

    "DEFAULT_PARSER_CLASSES": ["common.api.DecimalJSONParser"]
"""

import codecs
from decimal import Decimal

import simplejson
from django.utils.dateparse import parse_datetime
from rest_framework import parsers, renderers
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.utils import encoders


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class DecimalJSONParser(parsers.JSONParser):
    """JSON in, fractions as Decimal; NaN and Infinity are malformed JSON."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            return simplejson.load(
                codecs.getreader(encoding)(stream),
                parse_float=Decimal,
                parse_constant=_reject_constant,
            )
        except ValueError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None


class DecimalJSONRenderer(renderers.JSONRenderer):
    """JSON out, Decimal written digit for digit."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        indent = self.get_indent(accepted_media_type, renderer_context or {})
        text = simplejson.dumps(
            data,
            use_decimal=True,
            default=encoders.JSONEncoder().default,
            indent=indent,
            ensure_ascii=self.ensure_ascii,
            separators=(",", ":") if indent is None else None,
            ignore_nan=False,
        )
        # Keep the output a strict JavaScript subset, as DRF's renderer does.
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


class ListFiltersOnlyMixin:
    """Apply the filter backends to lists only. DRF runs them for every action, so a
    detail request would build and validate a FilterSet (about 15 % of a cart GET in a
    profile) to filter a queryset that is then looked up by primary key anyway."""

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)


class NewestFirstCursorPagination(CursorPagination):
    ordering = "-created"
    page_size_query_param = "page_size"
    max_page_size = 100

    def decode_cursor(self, request):
        """A cursor is opaque to clients: anything we did not hand out is a 400."""
        try:
            cursor = super().decode_cursor(request)
            # The position is a `created` timestamp; parse_datetime raises or says None.
            if cursor and cursor.position is not None and not parse_datetime(cursor.position):
                raise ValueError(cursor.position)
        except (NotFound, ValueError):
            raise ValidationError(
                {self.cursor_query_param: ["This cursor was not handed out by this list."]},
                code="invalid_cursor",
            ) from None
        return cursor
