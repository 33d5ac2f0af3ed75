from django.conf import settings
from django.db import models

DEFAULT_COLOR = {"h": 1.0, "s": 1.0}


class Lampi(models.Model):
    """A LAMPI smart lamp, owned by one user (as in the LAMPI course site)."""

    name = models.CharField(max_length=50, default="My LAMPI")
    device_id = models.CharField(max_length=12, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lampis")
    association_code = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["device_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.device_id})"
