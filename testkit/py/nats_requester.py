#!/usr/bin/env python3
"""An independent NATS requester (nats-py) for the interop tests: sends COUNT requests with
request() to SUBJECT and prints one JSON line with how many were answered.

usage: nats_requester.py URL SUBJECT COUNT [TIMEOUT_S]
"""
import asyncio
import json
import sys

import nats


async def main(url, subject, count, timeout):
    nc = await nats.connect(url, allow_reconnect=False)
    answered, errors, bodies = 0, [], set()
    for i in range(count):
        payload = f"py-{i}".encode()
        try:
            msg = await nc.request(subject, payload, timeout=timeout)
            answered += 1
            bodies.add(len(msg.data))
        except Exception as e:  # timeouts and no-responders are counted, not fatal
            errors.append(type(e).__name__)
    await nc.close()
    print(json.dumps({"sent": count, "answered": answered, "errors": errors[:5],
                      "body_lengths": sorted(bodies)}), flush=True)


if __name__ == "__main__":
    url, subject, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
    asyncio.run(main(url, subject, count, timeout))
