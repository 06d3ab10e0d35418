#!/usr/bin/env python3
"""An independent NATS responder (nats-py) for the interop tests: answers every message on
SUBJECT (queue group QUEUE) on its reply subject, headers copied and payload echoed. Prints
"ready" once subscribed, then one line per second with the count answered; runs until killed.

usage: nats_responder.py URL SUBJECT QUEUE
"""
import asyncio
import sys

import nats


async def main(url, subject, queue):
    nc = await nats.connect(url, max_reconnect_attempts=-1)
    answered = 0

    async def answer(msg):
        nonlocal answered
        if msg.reply:
            await nc.publish(msg.reply, msg.data, headers=msg.headers)
            answered += 1

    await nc.subscribe(subject, queue=queue, cb=answer)
    await nc.flush()
    print("ready", flush=True)
    while True:
        await asyncio.sleep(1)
        print(f"answered {answered}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
