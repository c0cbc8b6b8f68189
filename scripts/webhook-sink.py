"""A local webhook receiver for scripts/bench-campaign (aiohttp): answers every POST /push with
200 after checking its X-Recur-Signature, counts requests, distinct idempotency keys and bad
signatures, and prints `requests=N keys=N bad_signatures=N` to stderr when stopped (SIGINT).

    python webhook-sink.py PORT SECRET
"""
import hashlib
import hmac
import sys

from aiohttp import web

port, secret = int(sys.argv[1]), sys.argv[2].encode()
counts = {"requests": 0, "bad": 0}
keys = set()


async def receive(request):
    body = await request.read()
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    valid = hmac.compare_digest(expected, request.headers.get("X-Recur-Signature", ""))
    counts["requests"] += 1
    counts["bad"] += 0 if valid else 1
    keys.add(request.headers.get("Idempotency-Key", ""))
    return web.Response(status=200 if valid else 401)


async def report(_app):
    print(f"requests={counts['requests']} keys={len(keys)} bad_signatures={counts['bad']}",
          file=sys.stderr, flush=True)


app = web.Application()
app.router.add_post("/push", receive)
app.on_shutdown.append(report)
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
