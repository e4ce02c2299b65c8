"""How an operator sees the service run: request ids (`context`), one log line per
request and JSON logs (`middleware`, `logs`), Prometheus metrics (`metrics`, `views`)."""
