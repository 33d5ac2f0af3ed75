"""The LAMPI course's URL conf: the app at the top, Django's auth views at /login/ and /logout/."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("", include("lampi.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
