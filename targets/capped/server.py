"""``python -m targets.capped.server --port P --max-concurrent N``: an endpoint that fails above N.

Every request to any path takes --service-ms (a gevent sleep: the server's service time)
while it holds one of N slots; a request arriving when all N are busy gets 503 at once.
With users that never wait between requests, N concurrent users is therefore exactly the
capacity, which is what the capacity search's tests and demos need: a system whose limit is known.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"


def handler_factory(max_concurrent: int, service_s: float):
    """A keep-alive HTTP/1.1 handler; each answer is one write with TCP_NODELAY, so no Nagle delay
    adds to the service time (that would make slots free up long before the client sees the answer)."""
    state = {"in_flight": 0, "served": 0, "refused": 0}

    def handle(sock: socket.socket, _addr) -> None:
        try:
            serve(sock)
        except OSError:  # the client went away (Locust stopping a user): nothing to answer
            pass

    def serve(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")  # GETs only: no request body
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
            if path == b"/stats":
                body = f'{{"served":{state["served"]},"refused":{state["refused"]}}}'.encode()
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                continue
            if state["in_flight"] >= max_concurrent:
                state["refused"] += 1
                sock.sendall(BUSY)
                continue
            state["in_flight"] += 1
            try:
                gevent.sleep(service_s)
            finally:
                state["in_flight"] -= 1
            state["served"] += 1
            sock.sendall(OK)

    return handle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m targets.capped.server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--max-concurrent", type=int, required=True, help="requests served at once; more get 503")
    p.add_argument("--service-ms", type=float, default=20.0, help="time each request holds its slot")
    args = p.parse_args(argv)
    if args.max_concurrent < 1:
        print(f"error: --max-concurrent {args.max_concurrent}: expected at least 1", file=sys.stderr)
        return 2
    server = StreamServer((args.host, args.port), handler_factory(args.max_concurrent, args.service_ms / 1000),
                          backlog=1024)
    print(f"serving on http://{args.host}:{args.port}/ with at most {args.max_concurrent} concurrent requests",
          flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
