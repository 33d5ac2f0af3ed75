from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from lampi.models import Lampi


@login_required
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "lampi/index.html", {"lampis": request.user.lampis.all()})


@login_required
def lampi(request: HttpRequest) -> HttpResponse:
    return render(request, "lampi/lampi.html", {"lampis": request.user.lampis.all()})


@login_required
def device(request: HttpRequest, device_id: str) -> HttpResponse:
    # Another user's lamp is a 404, not a 403: its existence is not disclosed.
    lamp = get_object_or_404(Lampi, device_id=device_id.lower(), user=request.user)
    return render(request, "lampi/device.html", {"lampi": lamp})
