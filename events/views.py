"""`POST /api/webhooks/payment-provider/`: the payment provider's events come in here.

Not part of the shop's API (left out of the OpenAPI schema): only the provider calls it,
and only events signed with the shared secret are accepted (`events.inbound`)."""

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    parser_classes,
    permission_classes,
)
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from events.inbound import provider_event_receive


class _RawBody(BaseParser):
    """The body stays bytes: the signature is over the exact bytes sent."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


@extend_schema(exclude=True)
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@parser_classes([_RawBody])
def payment_provider_webhook(request):
    outcome = provider_event_receive(body=request.body, headers=request.headers)
    return Response({"received": True, "outcome": outcome})
