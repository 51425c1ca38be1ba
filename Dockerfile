# One image for every process: web, ingest, worker, beat (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    GALFRIDAY_VAR_DIR=/app/var DEBUG=false
WORKDIR /app

RUN useradd --create-home --uid 10001 galfriday
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY . .
# collectstatic needs settings that pass with DEBUG off; the build-time values are never used at run time.
RUN SECRET_KEY=build-only DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput \
    && mkdir -p /app/var/metrics && chown -R galfriday /app/var
USER galfriday

EXPOSE 8000
CMD ["uvicorn", "galfriday_site.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
