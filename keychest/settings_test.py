"""Test settings: the production module with a fast hasher, in-memory email and plain HTTP."""

from __future__ import annotations

import os

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdefghij")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
# Tests share one Redis with other runs and, under pytest-xdist, with the other workers: each
# process gets its own Celery queues (a worker subprocess inherits the prefix) and cache keys.
os.environ["KEYCHEST_BROKER_PREFIX"] = f"keychest-test-{os.getpid()}:"

from keychest.settings import *  # noqa: F403
from keychest.settings import CACHES, STORAGES

# The test client speaks plain HTTP.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
if "redis" in CACHES["default"]["BACKEND"].lower():
    CACHES["default"]["KEY_PREFIX"] = f"keychest-test-{os.getpid()}"
