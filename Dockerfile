# KeyChest application image: web (gunicorn), worker and beat all run from it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

RUN useradd --system --create-home --home-dir /home/keychest keychest
COPY requirements.txt /app/requirements.txt
RUN pip install -r /app/requirements.txt
COPY . /app
# collectstatic needs settings that import; the real values come from the environment at run time.
RUN DEBUG=0 SECRET_KEY=build-only-not-secret python manage.py collectstatic --noinput \
    && mkdir -p /app/var && chown -R keychest /app/var

USER keychest
EXPOSE 8000
# Worker model, processes and threads: gunicorn.conf.py (WEB_CONCURRENCY, GUNICORN_CMD_ARGS override).
CMD ["gunicorn", "keychest.wsgi:application", "--config", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
