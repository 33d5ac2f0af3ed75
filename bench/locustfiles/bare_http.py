"""The baseline of bench/http.py: a FastHttpUser with no wait that GETs the learner's three pages
with the learner's weights (`/lampi` pays the site's 301 to `/lampi/`), and nothing else."""

from locust import FastHttpUser, constant, task


class Bare(FastHttpUser):
    wait_time = constant(0)

    @task(100)
    def index(self) -> None:
        self.client.get("/")

    @task(80)
    def lampi(self) -> None:
        self.client.get("/lampi")

    @task(75)
    def device(self) -> None:
        self.client.get("/lampi/device/1e0000000000")
