"""Settings of the LAMPI reference site; `LAMPISITE_PROFILE` picks baseline or tuned.

baseline: what a first deployment looks like (SQLite in rollback-journal mode, database-backed
sessions, a new database connection per request; gunicorn runs 1 worker).
tuned: the changes that measurably raise capacity on the same machine (signed-cookie sessions so
a page view writes nothing, persistent connections, SQLite in WAL mode; gunicorn runs several
workers). Both serve the same pages, so one locustfile measures either.
"""

import os
from pathlib import Path

PROFILE = os.environ.get("LAMPISITE_PROFILE", "baseline")
if PROFILE not in ("baseline", "tuned"):
    raise SystemExit(f"error: LAMPISITE_PROFILE={PROFILE!r}: expected baseline or tuned")

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LAMPISITE_DATA_DIR", BASE_DIR / ".data"))
DATA_DIR.mkdir(parents=True, exist_ok=True)

# A reference system on loopback: the key only signs sessions of fake users. Set it for anything else.
SECRET_KEY = os.environ.get("LAMPISITE_SECRET_KEY", "lampisite-reference-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = os.environ.get("LAMPISITE_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "lampi",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # With APPEND_SLASH (Django's default) it answers /lampi with a 301 to /lampi/, as a course site does.
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "lampisite.urls"
WSGI_APPLICATION = "lampisite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]

_sqlite_options = {"timeout": 20}
if PROFILE == "tuned":
    # WAL lets readers run while a writer commits; NORMAL sync is safe with WAL.
    _sqlite_options["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
        "OPTIONS": _sqlite_options,
        "CONN_MAX_AGE": None if PROFILE == "tuned" else 0,
    }
}

SESSION_ENGINE = (
    "django.contrib.sessions.backends.signed_cookies" if PROFILE == "tuned" else "django.contrib.sessions.backends.db"
)

# Test data is hashed with MD5 (see loadtestingdata) so 10,000 users load in seconds and a login
# measures the site rather than PBKDF2. LAMPISITE_PASSWORD_HASHER=pbkdf2 measures the real login
# cost instead: Django then re-hashes each fake user's password on its first login.
_hashers = {
    "md5": "django.contrib.auth.hashers.MD5PasswordHasher",
    "pbkdf2": "django.contrib.auth.hashers.PBKDF2PasswordHasher",
}
_preferred = os.environ.get("LAMPISITE_PASSWORD_HASHER", "md5")
if _preferred not in _hashers:
    raise SystemExit(f"error: LAMPISITE_PASSWORD_HASHER={_preferred!r}: expected md5 or pbkdf2")
PASSWORD_HASHERS = [_hashers[_preferred], *(h for k, h in _hashers.items() if k != _preferred)]

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
