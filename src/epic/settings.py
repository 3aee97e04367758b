"""Django settings, read from the environment so one code base serves every deployment."""

import os
import secrets
import socket
from pathlib import Path

import dj_database_url

# As root, state goes where the jobs' own uids can pass through to their folders.
_DEFAULT_HOME = Path("/var/lib/epic") if os.geteuid() == 0 else Path.home() / ".epic"
EPIC_HOME = Path(os.environ.get("EPIC_HOME", _DEFAULT_HOME)).expanduser().resolve()
EPIC_DATA_ROOT = EPIC_HOME / "data"
EPIC_WORK_ROOT = EPIC_HOME / "work"

# Where the built-in S3 endpoint is reachable, written by `epic serve` for the API to hand out.
EPIC_S3_ENDPOINT_URL = os.environ.get("EPIC_S3_ENDPOINT_URL", "")
EPIC_S3_BUCKET = os.environ.get("EPIC_S3_BUCKET", "epic")
EPIC_S3_REGION = os.environ.get("EPIC_S3_REGION", "us-east-1")
EPIC_DATA_SESSION_SECONDS = int(os.environ.get("EPIC_DATA_SESSION_SECONDS", "3600"))

# How often the worker looks for work when nobody wakes it.
EPIC_WORKER_POLL_SECONDS = float(os.environ.get("EPIC_WORKER_POLL_SECONDS", "0.25"))
# Workers sharing a database need a name each; a restarted worker keeps its name and its jobs.
EPIC_WORKER_NAME = os.environ.get("EPIC_WORKER_NAME") or socket.gethostname()
# How long a worker's claim on its jobs lasts without renewal before other workers take over.
EPIC_WORKER_LEASE_SECONDS = float(os.environ.get("EPIC_WORKER_LEASE_SECONDS", "60"))
# When the server runs as root, each job's processes run under their own unprivileged uid,
# EPIC_JOB_UID_BASE + job id, so that a job can read neither the server's state nor other jobs.
EPIC_ISOLATE_JOBS = os.environ.get("EPIC_ISOLATE_JOBS", "1" if os.geteuid() == 0 else "0") == "1"
EPIC_JOB_UID_BASE = int(os.environ.get("EPIC_JOB_UID_BASE", "1000000"))
# The interpreter that runs a step's runner under a job uid (it must be world-executable).
EPIC_RUNNER_PYTHON = os.environ.get("EPIC_RUNNER_PYTHON", "/usr/bin/python3")

# Run the worker inside `epic serve` (embedded mode); scale-out runs `epic worker` instead.
EPIC_EMBEDDED_WORKER = os.environ.get("EPIC_EMBEDDED_WORKER", "1") == "1"

# Where compute nodes reach this server's step I/O endpoint (no /api/v2): `epic serve` sets it
# from the address it listens on when unset. A Slurm step's wrapper talks to nothing else.
EPIC_API_URL = os.environ.get("EPIC_API_URL", "")
# The folder on each Slurm compute node under which a step makes its own scratch folder.
EPIC_SLURM_SCRATCH = os.environ.get("EPIC_SLURM_SCRATCH", "/tmp")  # noqa: S108 (a node's)
# Where jobs are isolated, a team's Slurm jobs run under the cluster account of this prefix
# followed by the team's id, which must exist on the submitting machine and on every node.
# Empty: `epic-<installation id>-t`, the installation id coming from the signing key.
EPIC_SLURM_ACCOUNT_PREFIX = os.environ.get("EPIC_SLURM_ACCOUNT_PREFIX", "")


def _secret_key() -> str:
    """Read the signing key from the environment or from EPIC_HOME, creating it once."""
    if os.environ.get("EPIC_SECRET_KEY"):
        return os.environ["EPIC_SECRET_KEY"]
    key_file = EPIC_HOME / "secret_key"
    if not key_file.exists():
        EPIC_HOME.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = os.environ.get("EPIC_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("EPIC_ALLOWED_HOSTS", "*").split(",")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "epic.accounts",
    "epic.projects",
    "epic.catalog",
    "epic.jobs",
    "epic.data",
    "epic.licences",
    "epic.billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "epic.urls"
# A submission of a thousand jobs fits well within this.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
WSGI_APPLICATION = "epic.wsgi.application"

_database_url = os.environ.get("EPIC_DATABASE_URL")
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": EPIC_HOME / "epic.sqlite3",
            # Each server thread keeps its connection: opening one costs a millisecond a request.
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                # Writers queue for the lock instead of failing; WAL lets readers run alongside.
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-gb"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["epic.accounts.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "epic.api.pagination.EpicPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["epic.api.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "epic.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "epic.api.schema.EpicAutoSchema",
    "UNAUTHENTICATED_USER": None,
}

STATIC_URL = "/static/"
# The reference page's scripts come from installed packages, served without collectstatic.
WHITENOISE_USE_FINDERS = True

SPECTACULAR_SETTINGS = {
    "TITLE": "EPIC API",
    "DESCRIPTION": "A self-hostable implementation of the EPIC API v2.",
    "VERSION": "2",
    "SCHEMA_PATH_PREFIX": "/api/v2",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "epic": {"handlers": ["console"], "level": os.environ.get("EPIC_LOG_LEVEL", "INFO")},
        # Tracebacks of requests that failed with a 500.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
