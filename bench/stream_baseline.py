"""Baseline relay for bench/stream.py: ``redis.asyncio`` pub/sub and ``websockets``, nothing else.

One process subscribes to one Redis channel and forwards every message, as
is, to every connected WebSocket client. It speaks just enough of
graphql-transport-ws (``connection_init`` -> ``connection_ack``, then one
``subscribe``) that the very same watcher code measures it and the real
server. The publisher (in bench/stream.py) publishes complete ``next`` frames
for subscription id "1", so the relay does no per-message work beyond the
fan-out itself: this is the floor a Redis + WebSocket relay costs here.

    python bench/stream_baseline.py --port P --redis redis://127.0.0.1:6379/0 --channel C

Prints ``ready`` on stdout once it is subscribed and listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import websockets
from redis import asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve


async def relay(port: int, redis_url: str, channel: str) -> None:
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        init = json.loads(await ws.recv())
        if init.get("type") != "connection_init":
            await ws.close(4400, "connection_init expected")
            return
        await ws.send(json.dumps({"type": "connection_ack"}))
        subscribe = json.loads(await ws.recv())
        if subscribe.get("type") != "subscribe" or subscribe.get("id") != "1":
            await ws.close(4400, "one subscribe with id 1 expected")
            return
        clients.add(ws)
        try:
            async for raw in ws:  # pings, complete, ...; nothing to do
                if '"ping"' in raw:
                    await ws.send('{"type":"pong"}')
        except websockets.ConnectionClosed:
            pass
        finally:
            clients.discard(ws)

    redis = aioredis.Redis.from_url(redis_url)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def forward() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                broadcast(clients, message["data"].decode())

    async with serve(
        handler, "127.0.0.1", port, subprotocols=["graphql-transport-ws"], max_size=None
    ):
        forwarder = asyncio.create_task(forward())
        print("ready", flush=True)
        await stop.wait()
        forwarder.cancel()
    await pubsub.unsubscribe(channel)
    await pubsub.aclose()
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--channel", required=True)
    args = parser.parse_args()
    asyncio.run(relay(args.port, args.redis, args.channel))


if __name__ == "__main__":
    main()
