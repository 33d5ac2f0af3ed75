"""The app's pages as the course writes them: `lampi/` is an include with a trailing slash, so
Django's APPEND_SLASH answers `/lampi` with a 301 to `/lampi/`; device pages have no slash."""

from django.urls import include, path, re_path

from lampi import views

urlpatterns = [
    path("", views.index, name="index"),
    path("lampi/", include([
        path("", views.lampi, name="lampi"),
        re_path(r"^device/(?P<device_id>[0-9a-fA-F]+)$", views.device, name="device"),
    ])),
]
