"""How every endpoint reads and writes JSON, and how lists are paged.

- `DecimalJSONParser` parses JSON numbers with a fraction into `Decimal`, so 10.10 stays
  10.10 instead of becoming the float 10.0999999…; integers stay `int`. It refuses, as
  `400 malformed_json`, what a strict reader must: nesting deeper than
  `JSON_MAX_DEPTH`, a key twice in one object, numbers longer than `JSON_MAX_NUMBER_LENGTH`
  characters, NaN/Infinity and bytes that are not UTF-8. Its messages say what is wrong
  with the body and where, never the parser's own internals. `read_json` is that reading
  for any text: the admin's JSON fields read what staff type with it.
- `DecimalJSONRenderer` writes `Decimal` as an exact JSON number (15.00, not 15.0 and
  not "15.00"): DRF's own renderer goes through float.
- `NewestFirstCursorPagination` pages by a cursor on `created`: each page costs one
  indexed range query whatever the table size (no OFFSET, no COUNT), and rows inserted
  while a client pages never shift or repeat items. It takes back only the cursors it
  hands out.
- `in_utc` says whether a time from a query can be asked of the database at all;
  `UTCDateTimeFilter` is a list's filter by such a time.

Settings wire them in as DRF defaults:

    "DEFAULT_PARSER_CLASSES": ["common.api.DecimalJSONParser"]
"""

import re
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import django_filters
import simplejson
from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_filters.fields import IsoDateTimeField
from rest_framework import parsers, renderers, serializers
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.utils import encoders

# Containers nested deeper than this are refused before parsing: no request of this API
# nests more than three levels, and a recursive parser must never meet 1,000 levels.
JSON_MAX_DEPTH = 32
# Digits and signs of one number: far above any amount (15 digits), far below Python's
# int-conversion limit (4,300 digits), whose error would otherwise reach the client.
JSON_MAX_NUMBER_LENGTH = 100

# A string (with its escapes; an unterminated one runs to the end, so the scan stays
# linear) or a bracket: strings are skipped, brackets counted.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def in_utc(value: datetime) -> datetime | None:
    """`value` in UTC (a naive one read in the current time zone), or None where UTC has
    no such time: 9999-12-31T23:59:59-01:00 is in year 10000, past what a datetime holds.
    The database is asked in UTC, and SQLite's backend converts in Python, where such a
    time is an OverflowError (a 500) that PostgreSQL would never have raised."""
    try:
        return (value if timezone.is_aware(value) else timezone.make_aware(value)).astimezone(UTC)
    except OverflowError:
        return None


class _Refused(ValueError):
    """Why a body that may be syntactically fine is still not accepted."""


def _reject_constant(name: str):
    raise _Refused(f"{name} is not a JSON number.")


def _check_number(text: str) -> str:
    if len(text) > JSON_MAX_NUMBER_LENGTH:
        raise _Refused(f"a number is longer than {JSON_MAX_NUMBER_LENGTH} characters.")
    return text


def _parse_int(text: str) -> int:
    return int(_check_number(text))


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    obj = {}
    for key, value in pairs:
        if key in obj:
            shown = key if len(key) <= 40 else key[:40] + "…"
            raise _Refused(f'the key "{shown}" appears twice in one object.')
        obj[key] = value
    return obj


def _check_depth(text: str) -> None:
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > JSON_MAX_DEPTH:
                raise _Refused(f"nested deeper than {JSON_MAX_DEPTH} levels.")
        elif token in "]}":
            depth -= 1


class MalformedJSON(ValueError):
    """Text this service does not read as JSON; its message says why and where, in the
    words the API answers with (`Malformed JSON: …`), never the parser's internals."""


def read_json(text: str, *, fraction=Decimal):
    """`text` read by the one set of rules for JSON the service is sent (see the module
    docstring); a fraction such as 10.10 read by `fraction`. Raises `MalformedJSON`.

    The admin's JSON fields read their text so too, with `fraction=float`: the model's
    JSONField writes its value with json.dumps, which has no Decimal."""

    def parse_fraction(number: str):
        return fraction(_check_number(number))

    try:
        _check_depth(text)
        return simplejson.loads(
            text,
            parse_float=parse_fraction,
            parse_int=_parse_int,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except _Refused as exc:
        raise MalformedJSON(f"Malformed JSON: {exc}") from None
    except simplejson.JSONDecodeError as exc:
        # simplejson's own words ("Expecting value") and where: line and column.
        raise MalformedJSON(
            f"Malformed JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except (ValueError, RecursionError):
        raise MalformedJSON("Malformed JSON.") from None


class DecimalJSONParser(parsers.JSONParser):
    """JSON in, fractions as Decimal; anything a strict reader refuses is a ParseError."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(f"Malformed JSON: the body is not valid {encoding}.") from None
        try:
            return read_json(text)
        except MalformedJSON as exc:
            raise ParseError(str(exc)) from None


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
    profile) to filter a queryset that is then looked up by primary key anyway; a list
    asked for without filter parameters skips it too."""

    def filter_queryset(self, queryset):
        if self.action != "list" or not self._has_filter_parameters():
            return queryset
        return super().filter_queryset(queryset)

    def _has_filter_parameters(self) -> bool:
        # A list asked for without any parameter but the page's has nothing to filter:
        # building and validating the FilterSet anyway was ~10 % of a list page.
        paging = {
            getattr(self.paginator, "cursor_query_param", None),
            getattr(self.paginator, "page_size_query_param", None),
        }
        return any(name not in paging for name in self.request.query_params)


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 time that UTC can express (`in_utc`). Out of range it is refused as
    DRF refuses the same time in a body (`overflow`, same words), so a filter and a
    field answer alike."""

    default_error_messages = {
        "overflow": serializers.DateTimeField.default_error_messages["overflow"]
    }

    def to_python(self, value):
        value = super().to_python(value)
        if value is not None and in_utc(value) is None:
            raise forms.ValidationError(self.error_messages["overflow"], code="overflow")
        return value


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class NewestFirstCursorPagination(CursorPagination):
    """Newest first. A view may serve the first page itself (`first_page(limit)`: the
    `limit` newest rows, or None to leave it to the queryset), by a statement compiled
    once: building and compiling the page's queryset was an eighth of a cart list's CPU.
    The rest is DRF's first-page logic, unchanged, so the page and its `next` cursor are
    what DRF makes (`test_the_first_page_is_drfs_own`)."""

    ordering = "-created"
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_queryset(self, queryset, request, view=None):
        first_page = getattr(view, "first_page", None)
        if first_page is None or self.cursor_query_param in request.query_params:
            return super().paginate_queryset(queryset, request, view)
        self.request = request
        self.page_size = self.get_page_size(request)
        results = first_page(self.page_size + 1) if self.page_size else None
        if results is None:
            return super().paginate_queryset(queryset, request, view)
        # DRF's own steps for a request without a cursor (offset 0, not reversed).
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, queryset, view)
        self.cursor = None
        self.page = list(results[: self.page_size])
        self.has_next = len(results) > len(self.page)
        self.has_previous = False
        if self.has_next:
            self.next_position = self._get_position_from_instance(results[-1], self.ordering)
        if self.has_next and self.template is not None:
            self.display_page_controls = True
        return self.page

    def decode_cursor(self, request):
        """A cursor is opaque to clients: anything we did not hand out is a 400."""
        try:
            cursor = super().decode_cursor(request)
            if cursor is not None:
                self._check_handed_out(request, cursor)
        except (NotFound, ValueError):
            raise ValidationError(
                {self.cursor_query_param: ["This cursor was not handed out by this list."]},
                code="invalid_cursor",
            ) from None
        return cursor

    def _check_handed_out(self, request, cursor) -> None:
        # DRF decodes leniently: it skips characters that are not base64 (`!!!` reads as
        # no cursor at all, the first page) and keys it never writes. A cursor this list
        # wrote is written again, character for character, from what it decodes to.
        written = parse_qs(urlsplit(self.encode_cursor(cursor)).query, keep_blank_values=True)
        if written.get(self.cursor_query_param) != [request.query_params[self.cursor_query_param]]:
            raise ValueError(cursor)
        # The position is a `created` timestamp (parse_datetime raises or says None), one
        # the database can be asked about.
        if cursor.position is not None:
            position = parse_datetime(cursor.position)
            if position is None or in_utc(position) is None:
                raise ValueError(cursor.position)
