from django.contrib.auth import views as auth_views
from django.urls import path, re_path
from lampi import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.index, name="index"),
    # The brief's paths have no trailing slash; serve both forms without a redirect round trip.
    re_path(r"^lampi/?$", views.lampi, name="lampi"),
    re_path(r"^lampi/device/(?P<device_id>[0-9a-fA-F]{1,16})/?$", views.device, name="device"),
]
