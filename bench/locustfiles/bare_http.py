"""The baseline of bench/http.py: a FastHttpUser that does nothing but GET / with no wait."""

from locust import FastHttpUser, constant, task


class Bare(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self) -> None:
        self.client.get("/")
