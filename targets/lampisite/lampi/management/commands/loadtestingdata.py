"""`manage.py loadtestingdata`: the fake users and lamps the load tests log in as.

User n is `user_%06d`, its password the username reversed, and it owns LAMPI device
`'%x' % (0x1e0000000000 + n)`. Idempotent: users and lamps already present are kept (their
passwords reset only with --reset-passwords), missing ones are bulk-created.
"""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from lampi.models import Lampi

DEVICE_ID_BASE = 0x1E0000000000
BATCH = 2000


def username(n: int) -> str:
    return f"user_{n:06d}"


def device_id(n: int) -> str:
    return "%x" % (DEVICE_ID_BASE + n)


class Command(BaseCommand):
    help = "Create fake users user_000000… with one LAMPI each, for load tests (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count", type=int, default=10_000, help="number of users (default 10000)")
        parser.add_argument("--start", type=int, default=0, help="number of the first user (default 0)")
        parser.add_argument("--reset-passwords", action="store_true",
                            help="also reset the passwords of users that already exist")

    def handle(self, *args, count: int, start: int, reset_passwords: bool, **options) -> None:
        if count < 1 or start < 0 or start + count > 1_000_000:
            raise CommandError(f"--start {start} --count {count}: expected 0 <= start and start+count <= 1000000")
        t0 = time.monotonic()
        User = get_user_model()
        # A fixed-salt-free fast hasher for fake users only: PBKDF2 would take ~50 min for 10,000.
        hasher = MD5PasswordHasher()
        wanted = {username(n): n for n in range(start, start + count)}
        # Range filters, not IN lists: names and ids are fixed-width, and SQLite caps bound variables.
        names = User.objects.filter(username__gte=username(start), username__lte=username(start + count - 1))
        lamps_in_range = Lampi.objects.filter(device_id__gte=device_id(start), device_id__lte=device_id(start + count - 1))
        with transaction.atomic():
            existing = {u: i for u, i in names.values_list("username", "id") if u in wanted}
            new_users = [
                User(username=name, password=hasher.encode(name[::-1], hasher.salt()))
                for name in wanted
                if name not in existing
            ]
            User.objects.bulk_create(new_users, batch_size=BATCH)
            if reset_passwords and existing:
                users = [u for u in names if u.username in wanted]
                for u in users:
                    u.password = hasher.encode(u.username[::-1], hasher.salt())
                User.objects.bulk_update(users, ["password"], batch_size=BATCH)

            ids = {u: i for u, i in names.values_list("username", "id") if u in wanted}
            taken = set(lamps_in_range.values_list("device_id", flat=True))
            new_lamps = [
                Lampi(name=f"LAMPI {device_id(n)}", device_id=device_id(n), user_id=ids[name])
                for name, n in wanted.items()
                if device_id(n) not in taken
            ]
            Lampi.objects.bulk_create(new_lamps, batch_size=BATCH)
        self.stdout.write(
            f"loadtestingdata: {len(new_users)} users and {len(new_lamps)} lamps created, "
            f"{len(existing)} users already present ({time.monotonic() - t0:.1f} s)"
        )
