"""GET /metrics: the Prometheus exposition of this instance (`observability.metrics`).

Open with ENV=DEV. With ENV=PROD only a staff user may read it (scrape with a staff
user's API token: `authorization: {type: Token, credentials: …}` in Prometheus), unless
`METRICS_PUBLIC=true` says the port is reachable only from the monitoring network.
"""

from django.conf import settings
from django.http import HttpResponse
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.views import APIView

from observability import metrics


class MetricsView(APIView):
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    schema = None  # operational, not part of the public API

    def get_permissions(self):
        return [AllowAny() if settings.METRICS_PUBLIC else IsAdminUser()]

    def get(self, request) -> HttpResponse:
        body, content_type = metrics.render()
        return HttpResponse(body, content_type=content_type)
