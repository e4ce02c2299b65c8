# syntax=docker/dockerfile:1
# The service's image. Stages:
#   builder  - a virtualenv with the runtime dependencies (cached until requirements change)
#   runtime  - slim, non-root, static files collected, gunicorn (the default target)
#   dev      - runtime + test dependencies: what Compose runs, so `pytest` works inside

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
# A fixed numeric id, so volume permissions and `USER` resolve the same everywhere.
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --chown=app:app . .
# Hashed, compressed static files (admin, API docs) served by whitenoise; collected with
# production storage so ENV=PROD finds its manifest. The variables only let settings load
# (a throw-away random key: PROD refuses weak ones; nothing connects to these URLs).
RUN ENV=PROD SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    ALLOWED_HOSTS=localhost REAL_PAYMENT_API=https://localhost REDIS_URL=redis://localhost \
    DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    python manage.py collectstatic --noinput --verbosity 0 \
 && chown app:app /app \
 && chown -R app:app /app/staticfiles
USER 10001:10001
EXPOSE 8000
# The API: GET /health/ with a Host of ALLOWED_HOSTS (ENV=PROD refuses 127.0.0.1 with a
# 400); a worker container from this image (manage.py run_worker): its database answers.
# scripts/healthcheck.py tells which from the container's command.
HEALTHCHECK --interval=10s --timeout=10s --start-period=20s --retries=3 \
  CMD ["python", "/app/scripts/healthcheck.py"]
CMD ["gunicorn", "--config", "python:CoreRoot.gunicorn", "CoreRoot.wsgi"]

FROM runtime AS dev
USER root
COPY requirements.txt requirements-dev.txt /tmp/
RUN pip install -r /tmp/requirements-dev.txt
USER 10001:10001
