"""Baselines for the intake: the same server (uvicorn, same defaults) with almost nothing behind it.

    python -m bench.hello asgi|fastapi PORT
"""

import sys

from fastapi import FastAPI, Request

BODY = b'{"received":true}'


async def asgi(scope, receive, send) -> None:
    """A plain ASGI app: read the whole body, answer 200 with a small JSON."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def fastapi_app():
    """FastAPI reading the raw body, as the intake's route does, and nothing else."""
    app = FastAPI()

    @app.post("/webhooks/stripe")
    async def stripe_webhook(request: Request) -> dict:
        await request.body()
        return {"received": True}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


async def _asgi_with_health(scope, receive, send) -> None:
    await asgi(scope, receive, send)


def main() -> None:
    import uvicorn

    kind, port = sys.argv[1], int(sys.argv[2])
    app = fastapi_app() if kind == "fastapi" else _asgi_with_health
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_config=None)


if __name__ == "__main__":
    main()
