"""`python -m bench.sink`: the receiving SMTP server in its own process, so its CPU is measured apart.

It prints its port on the first line of stdout, neither parses nor keeps messages (a long run would
fill memory, and parsing each cost the shared cores about a millisecond that no part of the system
pays), and stops on SIGINT/SIGTERM, printing how many messages it received.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from devstack.smtp_sink import SmtpSink


async def serve() -> int:
    sink = SmtpSink(keep=False)
    await sink.start()
    print(sink.port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sink.stop()
    print(f"received {sink.received}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(serve()))
