"""What one round trip from the network loop to a user's lane costs, alone (issue 13).

    lane_hop.py [--jobs 5000]

Runs ``--jobs`` trivial jobs one after the other through ``imapd.lanes.LanePool.run`` (the path every
command of a logged-in user took before ``dispatch.in_memory``) and, for comparison, through the default
thread-pool executor and inline; prints CPU (process time: both threads) and wall time per job, and the
load average, since a loaded machine inflates both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


async def _main(jobs: int) -> None:
    from imapd.lanes import LanePool

    pool = LanePool(max_lanes=4)
    loop = asyncio.get_running_loop()

    async def job() -> int:
        return 1

    async def lane() -> None:
        await pool.run("user", "bench", job())

    async def executor() -> None:
        await loop.run_in_executor(None, int)

    async def inline() -> None:
        await job()

    for name, one in (("lane round trip", lane), ("executor round trip", executor), ("inline", inline)):
        for _ in range(200):
            await one()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(jobs):
            await one()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{name:22s} cpu {1e6 * cpu / jobs:7.1f} us   wall {1e6 * wall / jobs:7.1f} us")
    pool.stop()
    print(f"jobs {jobs}, load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    sys.setswitchinterval(0.002)  # as the server sets it
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main(args.jobs))
    else:
        uvloop.run(_main(args.jobs))


if __name__ == "__main__":
    main()
