"""A shop's webhook endpoint for the Kubernetes smoke (.ci/kube_smoke.py plays it in the
`support` pod): answers 200 to an event whose Standard Webhooks signature verifies, else
401, and prints `<status> <webhook-id> <X-Request-ID>` for each.

    SHOP_WEBHOOK_SECRET=whsec_... python .ci/shop_receiver.py PORT
"""

import http.server
import os
import sys

from standardwebhooks import Webhook, WebhookVerificationError

hook = Webhook(os.environ["SHOP_WEBHOOK_SECRET"])


class Shop(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            hook.verify(body, dict(self.headers.items()))
            status = 200
        except (WebhookVerificationError, ValueError):
            status = 401
        print(status, self.headers.get("webhook-id"), self.headers.get("X-Request-ID"), flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Shop).serve_forever()
