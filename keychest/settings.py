"""KeyChest settings: one module, every value read from the environment (see README)."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from keychest.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    parse_database_url,
    parse_email_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("KEYCHEST_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-never-use-in-production-0123456789abcdef"  # noqa: S105 - DEBUG only
# Former keys, still accepted for signatures and still able to open sealed secrets (Apprise
# URLs), so SECRET_KEY can be rotated without logging everyone out or losing channels.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
SITE_URL = (env_str("SITE_URL") or "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [SITE_URL])

INSTALLED_APPS = [
    "keychest.admin_apps.KeyChestAdminConfig",  # django.contrib.admin behind allauth + MFA
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files (CSP, no CDN)
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "keychest.accounts",
    "dashboard",
    "events",
    "certificates",
    "monitors",
    "agents",
    "discovery",
    "notifications",
    "api",
    "health",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "keychest.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "keychest.accounts.middleware.CurrentTeamMiddleware",
    "dashboard.middleware.UserTimezoneMiddleware",
]

ROOT_URLCONF = "keychest.urls"
WSGI_APPLICATION = "keychest.wsgi.application"
ASGI_APPLICATION = "keychest.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "keychest.accounts.context_processors.current_team",
            ],
        },
    }
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'keychest.sqlite3'}"
DATABASES = {"default": parse_database_url(DATABASE_URL, base_dir=BASE_DIR)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL and a busy timeout let the web server, the worker and beat share one SQLite file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# keychest/sqlrows.py: the API's hot queries as server-side prepared statements (PREPARE once
# per connection, then EXECUTE). Off behind a pooler in transaction or statement mode
# (PgBouncer), where consecutive statements may reach different server sessions.
KEYCHEST_DB_PREPARED_STATEMENTS = env_bool("KEYCHEST_DB_PREPARED_STATEMENTS", True)

# --- Redis, cache and Celery ----------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL") or ""
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("KEYCHEST_CACHE_PREFIX") or "keychest",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "keychest"}}

# Redis holds a message a worker took (acks_late, or waiting for its ETA) for this long before it
# hands it out again. Longer than the task time limit plus the longest countdown
# (KEYCHEST_MAX_COUNTDOWN), so a running task is never handed out twice; a killed worker's
# work comes back sooner through the claim columns (scan claims, delivery and report claims),
# not through this timeout (docs/reliability.md).
KEYCHEST_MAX_COUNTDOWN = 600
CELERY_TASK_TIME_LIMIT = env_int("KEYCHEST_TASK_TIME_LIMIT", 900, minimum=10)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": env_int(
        "KEYCHEST_BROKER_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + KEYCHEST_MAX_COUNTDOWN + 120, minimum=60
    )
}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) and env_str("KEYCHEST_BROKER_PREFIX"):
    # Several deployments (or parallel test workers) sharing one Redis keep their queues apart.
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env_str("KEYCHEST_BROKER_PREFIX")
if not CELERY_BROKER_URL:
    # No broker server: kombu's filesystem transport needs only a folder shared by the
    # web server, the worker and beat, so `make run` works on a bare machine.
    _queue_dir = VAR_DIR / "celery-queue"
    for _folder in (_queue_dir, VAR_DIR / "celery-processed"):
        _folder.mkdir(parents=True, exist_ok=True)
    # A host name, though the transport ignores it: without one kombu warns on every connection.
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Periodic work, keyed by name; each app adds its entries in keychest/celery.py.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}

# --- Authentication -------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "home"

ACCOUNT_ADAPTER = "keychest.accounts.adapters.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_EMAIL_CONFIRMATION_EXPIRE_DAYS = 3
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[KeyChest] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if SITE_URL.startswith("https") else "http"
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "signup": env_str("KEYCHEST_SIGNUP_RATE") or "20/h/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "KeyChest"

# --- Email ----------------------------------------------------------------------------------
_email = parse_email_url(env_str("EMAIL_URL") or "console://")
EMAIL_BACKEND = _email.backend
EMAIL_HOST = _email.host
EMAIL_PORT = _email.port
EMAIL_HOST_USER = _email.user
EMAIL_HOST_PASSWORD = _email.password
EMAIL_USE_TLS = _email.use_tls
EMAIL_USE_SSL = _email.use_ssl
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20, minimum=1)
if _email.file_path:
    EMAIL_FILE_PATH = _email.file_path
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "KeyChest <noreply@keychest.local>"
SERVER_EMAIL = env_str("SERVER_EMAIL") or DEFAULT_FROM_EMAIL
KEYCHEST_REPLY_TO_EMAIL = env_str("KEYCHEST_REPLY_TO_EMAIL") or ""

# --- KeyChest -------------------------------------------------------------------------------
# Scanner and webhooks refuse loopback/private/link-local/... targets unless this is on.
KEYCHEST_ALLOW_PRIVATE_TARGETS = env_bool("KEYCHEST_ALLOW_PRIVATE_TARGETS", False)
# Scanner (docs/scanner.md): resolvers ("ip[:port]", comma-separated; empty = system), timeouts
# in seconds, open connections per worker, servers per scan task.
KEYCHEST_DNS_NAMESERVERS = env_list("KEYCHEST_DNS_NAMESERVERS", [])
KEYCHEST_DNS_TIMEOUT = env_float("KEYCHEST_DNS_TIMEOUT", 5.0, minimum=0.1)
KEYCHEST_SCAN_DEADLINE = env_float("KEYCHEST_SCAN_DEADLINE", 10.0, minimum=0.5)
KEYCHEST_SCAN_CONNECT_TIMEOUT = env_float("KEYCHEST_SCAN_CONNECT_TIMEOUT", 5.0, minimum=0.1)
KEYCHEST_SCAN_CONCURRENCY = env_int("KEYCHEST_SCAN_CONCURRENCY", 200, minimum=1)
KEYCHEST_SCAN_BATCH = env_int("KEYCHEST_SCAN_BATCH", 200, minimum=1)
# How long a scan's claim on its servers holds without renewal (a running scan renews it every
# quarter lease): a killed worker's servers are queued again within this plus one beat pass.
KEYCHEST_SCAN_CLAIM_LEASE = env_int("KEYCHEST_SCAN_CLAIM_LEASE", 40, minimum=4)
KEYCHEST_SCAN_LEGACY_TLS = env_bool("KEYCHEST_SCAN_LEGACY_TLS", True)
KEYCHEST_SCAN_LEGACY_INTERVAL = env_int("KEYCHEST_SCAN_LEGACY_INTERVAL", 24 * 3600, minimum=0)
# Look for a second certificate of the other key family (RSA beside ECDSA) on every address:
# on the legacy cadence, on new addresses, and on every scan of addresses that have one.
KEYCHEST_SCAN_ALTERNATE_KEY = env_bool("KEYCHEST_SCAN_ALTERNATE_KEY", True)
KEYCHEST_SPOTCHECK_RATE = env_int("KEYCHEST_SPOTCHECK_RATE", 10, minimum=1)
# The public spot check runs in the web thread, bounded: per-address deadline (DNS gets at most
# 2 s, HSTS at most 3 s), and at most this many at once per web process (the next one is a 503).
KEYCHEST_SPOTCHECK_DEADLINE = env_float("KEYCHEST_SPOTCHECK_DEADLINE", 5.0, minimum=0.5)
KEYCHEST_SPOTCHECK_CONCURRENCY = env_int("KEYCHEST_SPOTCHECK_CONCURRENCY", 2, minimum=1)
# Beat's pass over due servers (seconds): with the claim lease, the bound on rescanning a killed
# worker's batch (docs/reliability.md).
KEYCHEST_SCAN_DUE_SECONDS = env_float("KEYCHEST_SCAN_DUE_SECONDS", 60.0, minimum=1.0)
CELERY_BEAT_SCHEDULE["monitors-scan-due"] = {"task": "monitors.tasks.scan_due", "schedule": KEYCHEST_SCAN_DUE_SECONDS}
# ACME Renewal Information (certificates/ari.py): extra or replaced ACME directories as
# "<CAA identifier or issuer-name text>=<directory URL>" (an empty URL switches one off).
KEYCHEST_ARI_DIRECTORIES = env_list("KEYCHEST_ARI_DIRECTORIES", [])
KEYCHEST_ARI_TIMEOUT = env_int("KEYCHEST_ARI_TIMEOUT", 10, minimum=1, maximum=60)
CELERY_BEAT_SCHEDULE["monitors-ari-refresh"] = {"task": "monitors.tasks.ari_refresh_task", "schedule": 600.0}
CELERY_BEAT_SCHEDULE["monitors-caa-refresh"] = {"task": "monitors.tasks.caa_refresh_task", "schedule": 600.0}
# IP-range discovery (discovery/, docs/agent.md): connection attempts per second over all ranges
# swept by the SaaS (one sweeping task at a time shares it) and the default per range; at most
# this many ranges per team.
KEYCHEST_DISCOVERY_RATE = env_float("KEYCHEST_DISCOVERY_RATE", 50.0, minimum=0.1)
KEYCHEST_DISCOVERY_RANGE_RATE = env_float("KEYCHEST_DISCOVERY_RANGE_RATE", 10.0, minimum=0.1)
KEYCHEST_DISCOVERY_MAX_RANGES = env_int("KEYCHEST_DISCOVERY_MAX_RANGES", 10, minimum=0)
CELERY_BEAT_SCHEDULE["discovery-sweep-due"] = {"task": "discovery.tasks.sweep_due", "schedule": 300.0}
# Scanning agents (agents/, docs/agent.md): `agent_silent` when one is silent for 2x its cadence.
# The work list comes in pages of at most this many targets (the agent follows `next`).
KEYCHEST_AGENT_WORK_PAGE = env_int("KEYCHEST_AGENT_WORK_PAGE", 500, minimum=1, maximum=5000)
CELERY_BEAT_SCHEDULE["agents-silent-check"] = {"task": "agents.tasks.agents_silent_check_task", "schedule": 60.0}
CELERY_BEAT_SCHEDULE["monitors-spotchecks-purge"] = {"task": "monitors.tasks.spotchecks_purge", "schedule": 86400.0}
# Domain registration expiry (monitors/registrations.py, docs/domains.md): IANA RDAP bootstrap
# (dns.json format; a path or an http(s) URL; empty = the snapshot in monitors/data/).
KEYCHEST_RDAP_BOOTSTRAP = env_str("KEYCHEST_RDAP_BOOTSTRAP") or ""
KEYCHEST_RDAP_TIMEOUT = env_float("KEYCHEST_RDAP_TIMEOUT", 10.0, minimum=0.5)
KEYCHEST_RDAP_MAX_BYTES = env_int("KEYCHEST_RDAP_MAX_BYTES", 256 * 1024, minimum=4096)
KEYCHEST_RDAP_INTERVAL_HOURS = env_int("KEYCHEST_RDAP_INTERVAL_HOURS", 48, minimum=1)
KEYCHEST_RDAP_BATCH = env_int("KEYCHEST_RDAP_BATCH", 500, minimum=1)
KEYCHEST_RDAP_PER_SERVER = env_int("KEYCHEST_RDAP_PER_SERVER", 100, minimum=1)
KEYCHEST_RDAP_WORKERS = env_int("KEYCHEST_RDAP_WORKERS", 8, minimum=1, maximum=64)
KEYCHEST_RDAP_BACKOFF_SECONDS = env_int("KEYCHEST_RDAP_BACKOFF_SECONDS", 60, minimum=0)
KEYCHEST_RDAP_BACKOFF_MAX_SECONDS = env_int("KEYCHEST_RDAP_BACKOFF_MAX_SECONDS", 6 * 3600, minimum=1)
CELERY_BEAT_SCHEDULE["monitors-registrations-sync"] = {"task": "monitors.tasks.registrations_sync", "schedule": 900.0}
CELERY_BEAT_SCHEDULE["monitors-registrations-check"] = {
    "task": "monitors.tasks.registrations_check_due",
    "schedule": 300.0,
}
KEYCHEST_INVITATION_MAX_AGE_DAYS = env_int("KEYCHEST_INVITATION_MAX_AGE_DAYS", 7, minimum=1)

# --- Notifications (notifications/) ---------------------------------------------------------
# A failing webhook/Slack/email delivery is retried with exponential back-off for this long.
KEYCHEST_DELIVERY_GIVE_UP_SECONDS = env_int("KEYCHEST_DELIVERY_GIVE_UP_SECONDS", 86400, minimum=60)
# Connect and read timeout of one webhook or Slack request.
KEYCHEST_WEBHOOK_TIMEOUT = env_int("KEYCHEST_WEBHOOK_TIMEOUT", 10, minimum=1, maximum=120)
# How long a worker owns a claimed delivery or report before another may take it over.
KEYCHEST_NOTIFY_CLAIM_SECONDS = env_int("KEYCHEST_NOTIFY_CLAIM_SECONDS", 600, minimum=10)
# The weekly-report sweep is split into this many tasks (by user id) so workers share it.
KEYCHEST_WEEKLY_REPORT_SHARDS = env_int("KEYCHEST_WEEKLY_REPORT_SHARDS", 2, minimum=1, maximum=64)
CELERY_BEAT_SCHEDULE.update(
    {
        "notifications-dispatch-events": {"task": "notifications.tasks.events_dispatch_task", "schedule": 30.0},
        "notifications-send-deliveries": {"task": "notifications.tasks.deliveries_send_due_task", "schedule": 30.0},
        "notifications-weekly-reports": {"task": "notifications.tasks.weekly_reports_send_due_task", "schedule": 300.0},
        "notifications-daily-digests": {"task": "notifications.tasks.digests_send_due_task", "schedule": 300.0},
    }
)

# --- Certificate Transparency ingestion (certificates/) -----------------------------------
# Chrome v3 log list: a path or an http(s) URL; empty = the snapshot bundled in certificates/data/.
KEYCHEST_CT_LOG_LIST = env_str("KEYCHEST_CT_LOG_LIST") or ""
# Whether the `ct` process (`manage.py ct_ingest --follow`) follows the logs, and whether the health
# check expects it to. Off by default in development (DEBUG): `make run` must not start reading the
# real logs by itself. (No beat schedule: the follower reads each log as soon as its head moves.)
KEYCHEST_CT_INGEST = env_bool("KEYCHEST_CT_INGEST", not DEBUG)
KEYCHEST_CT_PARALLEL = env_int("KEYCHEST_CT_PARALLEL", 4, minimum=1, maximum=32)
# Deadline of one CT request as a whole (resolve, connect, send, every read), seconds.
KEYCHEST_CT_TIMEOUT = env_int("KEYCHEST_CT_TIMEOUT", 20, minimum=1)
# Largest answer read from a CT log (also once decompressed), bytes; a larger one is refused.
KEYCHEST_CT_MAX_BYTES = env_int("KEYCHEST_CT_MAX_BYTES", 16 * 1024 * 1024, minimum=65536)
KEYCHEST_CT_CHUNK = env_int("KEYCHEST_CT_CHUNK", 4096, minimum=1)
KEYCHEST_CT_BACKOFF_SECONDS = env_int("KEYCHEST_CT_BACKOFF_SECONDS", 5, minimum=0)
KEYCHEST_CT_BACKOFF_MAX_SECONDS = env_int("KEYCHEST_CT_BACKOFF_MAX_SECONDS", 900, minimum=1)
KEYCHEST_CT_RETENTION_DAYS = env_int("KEYCHEST_CT_RETENTION_DAYS", 400, minimum=1)
# The follower (certificates/follower.py): a log's lease runs out this long after its holder
# stopped renewing it (a crashed follower's logs are taken over then); logs one follower holds
# at most (0: an equal share of the live followers'); threads writing to the database; how
# often a log's head is read (adaptive, between these bounds); and the lag that fails the health.
KEYCHEST_CT_LEASE_SECONDS = env_int("KEYCHEST_CT_LEASE_SECONDS", 10, minimum=3, maximum=600)
KEYCHEST_CT_FOLLOW_MAX_LOGS = env_int("KEYCHEST_CT_FOLLOW_MAX_LOGS", 0, minimum=0)
KEYCHEST_CT_FOLLOW_WORKERS = env_int("KEYCHEST_CT_FOLLOW_WORKERS", 4, minimum=1, maximum=64)
KEYCHEST_CT_POLL_MIN_SECONDS = env_float("KEYCHEST_CT_POLL_MIN_SECONDS", 1.0, minimum=0.1)
KEYCHEST_CT_POLL_MAX_SECONDS = env_float("KEYCHEST_CT_POLL_MAX_SECONDS", 30.0, minimum=0.1)
KEYCHEST_CT_LAG_FAIL_SECONDS = env_int("KEYCHEST_CT_LAG_FAIL_SECONDS", 60, minimum=5)
CELERY_BEAT_SCHEDULE["certificates-thin-expired"] = {
    "task": "certificates.tasks.certificates_thin_task",
    "schedule": 86400.0,
}

# --- Monitoring health (health/) -------------------------------------------------
# `/status.json` answers to staff sessions and to `Authorization: Bearer <this token>` (probes).
KEYCHEST_STATUS_TOKEN = env_str("KEYCHEST_STATUS_TOKEN") or ""
# A host[:port] known to serve a valid certificate, scanned through the real scanner every
# KEYCHEST_CANARY_INTERVAL seconds; empty = no canary. KEYCHEST_CANARY_CA_FILE: a PEM bundle
# to trust for it (a private CA).
KEYCHEST_CANARY_TARGET = env_str("KEYCHEST_CANARY_TARGET") or ""
KEYCHEST_CANARY_CA_FILE = env_str("KEYCHEST_CANARY_CA_FILE") or ""
KEYCHEST_CANARY_INTERVAL = env_int("KEYCHEST_CANARY_INTERVAL", 300, minimum=60)
CELERY_BEAT_SCHEDULE["health-heartbeat"] = {"task": "keychest.health.tasks.heartbeat_task", "schedule": 60.0}

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# In development (and tests) serve straight from the app folders; production runs collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's JSON parser with a nesting bound (keychest/jsonsafe.py); form and multipart are flat.
    "DEFAULT_PARSER_CLASSES": [
        "api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "KeyChest API",
    "DESCRIPTION": "Watch TLS certificates: servers, certificates, findings and alerts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # api/: Swagger UI from the sidecar package's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # api/: choice sets named once, so the schema has no generated enum names.
    "ENUM_NAME_OVERRIDES": {
        "EventKindEnum": "notifications.models.EventKind",
        "ChannelKindEnum": "notifications.models.ChannelKind",
        "EnrolmentKindEnum": "api.models.EnrolmentKind",
    },
    # api/schema.py: every operation's error answers (400, 401, 403, 404, 429) are documented.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "api.schema.error_responses"],
}

# --- Security -------------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("KEYCHEST_BEHIND_PROXY", False) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440, minimum=1024)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL") or "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- API keys and the claim flow (api/) -----------------------------------------------------
# Links in claim emails and unconfirmed keys (and what they enrolled) last this long.
KEYCHEST_CLAIM_MAX_AGE_DAYS = env_int("KEYCHEST_CLAIM_MAX_AGE_DAYS", 7, minimum=1)
KEYCHEST_CLAIM_ACCOUNTS_PER_IP_PER_DAY = env_int("KEYCHEST_CLAIM_ACCOUNTS_PER_IP_PER_DAY", 5, minimum=0)
KEYCHEST_CLAIM_UNCONFIRMED_KEYS_PER_USER = env_int("KEYCHEST_CLAIM_UNCONFIRMED_KEYS_PER_USER", 100, minimum=0)
KEYCHEST_CLAIM_EMAILS_PER_ADDRESS_PER_DAY = env_int("KEYCHEST_CLAIM_EMAILS_PER_ADDRESS_PER_DAY", 10, minimum=0)
KEYCHEST_CLAIM_GLOBAL_PER_HOUR = env_int("KEYCHEST_CLAIM_GLOBAL_PER_HOUR", 1000, minimum=0)
# Claims one client IP may make per hour (refused ones included), before the global cap counts them.
# What one person's unconfirmed (claimed, not yet confirmed) keys may hold together.
KEYCHEST_UNCONFIRMED_MAX_ITEMS = env_int("KEYCHEST_UNCONFIRMED_MAX_ITEMS", 100, minimum=1)
KEYCHEST_UNCONFIRMED_MAX_BYTES = env_int("KEYCHEST_UNCONFIRMED_MAX_BYTES", 1024 * 1024, minimum=65536)
# Invitation emails one address may receive per day (from every team together).
KEYCHEST_INVITATIONS_PER_ADDRESS_PER_DAY = env_int("KEYCHEST_INVITATIONS_PER_ADDRESS_PER_DAY", 3, minimum=1)
# Confirmation emails one outside address may receive per day (channel addresses, notification_email).
KEYCHEST_CONFIRMATIONS_PER_ADDRESS_PER_DAY = env_int("KEYCHEST_CONFIRMATIONS_PER_ADDRESS_PER_DAY", 3, minimum=1)
KEYCHEST_CLAIM_PER_IP_PER_HOUR = env_int("KEYCHEST_CLAIM_PER_IP_PER_HOUR", 30, minimum=0)
# Requests per minute through the API, per key (or signed-in user) and per client address.
KEYCHEST_API_RATE_PER_KEY = env_int("KEYCHEST_API_RATE_PER_KEY", 600, minimum=1)
KEYCHEST_API_RATE_PER_IP = env_int("KEYCHEST_API_RATE_PER_IP", 1200, minimum=1)
# The most hits of those limits a web process takes from Redis at once and spends locally
# (keychest.ratelimit.LeasedCounters); 1 counts every request in Redis.
KEYCHEST_API_RATE_LEASE = env_int("KEYCHEST_API_RATE_LEASE", 32, minimum=1)
# api/keycache.py: seconds a process may reuse a verified key (only while the auth epoch in
# PostgreSQL, advanced by every revocation and role change, is unchanged); 0 looks every key up every time.
KEYCHEST_API_KEY_CACHE_SECONDS = env_int("KEYCHEST_API_KEY_CACHE_SECONDS", 30, minimum=0)
