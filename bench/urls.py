"""The app's URLs plus `/bench/bare/`, the baseline every scenario is compared with.

`BareView` is a DRF APIView that keeps the project's DEFAULT authentication, permission,
renderer and parser classes (nothing is overridden) and returns a constant: the same
stack as the real endpoints, minus the database and the serializers. Its rate under the
same gunicorn is what "1.0" means in the benchmark's ratios.
"""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from CoreRoot.urls import handler400, handler403, handler404, handler500, urlpatterns

BARE_BODY = {"status": "ok", "bench": "bare"}


class BareView(APIView):
    schema = None  # not part of the API

    def get(self, request) -> Response:
        return Response(BARE_BODY)


urlpatterns = [*urlpatterns, path("bench/bare/", BareView.as_view(), name="bench-bare")]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
