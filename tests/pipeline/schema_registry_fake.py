"""A Confluent Schema Registry stand-in serving the registry's REST wire format (no registry server
exists for this machine): POST /subjects/<subject>/versions registers (same schema → same id),
GET /schemas/ids/<id> returns it. Requests are recorded for the tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistry:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}  # canonical schema text -> id
        self.subjects: dict[str, int] = {}  # subject -> id of its latest version
        self.auth: list[str | None] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                parts = self.path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
                    return self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
                registry.auth.append(self.headers.get("Authorization"))
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    text = json.dumps(json.loads(payload["schema"]), sort_keys=True)
                except (KeyError, ValueError):
                    return self._send(422, {"error_code": 42201, "message": "Invalid schema"})
                schema_id = registry.ids.setdefault(text, 100 + len(registry.ids) + 1)
                registry.subjects[unquote(parts[1])] = schema_id
                self._send(200, {"id": schema_id})

            def do_GET(self) -> None:  # noqa: N802
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
                    for text, schema_id in registry.ids.items():
                        if str(schema_id) == parts[2]:
                            return self._send(200, {"schema": text})
                self._send(404, {"error_code": 40403, "message": "Schema not found"})

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def schema(self, schema_id: int) -> dict:
        return json.loads(next(t for t, i in self.ids.items() if i == schema_id))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
