"""conveyor shape (a) / (c): a linear chain of steps passing an int, as the peers' scripts do.

    python conveyor_int.py                 -> caching off (shape a), tracking and lineage on
    python conveyor_int.py --cache         -> caching on (shape c: all cached after a priming run)
    python conveyor_int.py --cache --fresh -> caching on, every lookup a miss (a random start)
    python conveyor_int.py --steps 100     -> 100 steps

Runs in the current folder's project (``.conveyor/``), as ``conveyor run`` would.
``shape.py`` comes from the peers' folder (``CONVEYOR_PIPEPEERS_DIR``).
"""

import os
import random
import sys
import time

sys.path.append(os.environ.get("CONVEYOR_PIPEPEERS_DIR", "/work/shared/peers/pipelines"))

from shape import N_STEPS

from conveyor.core.pipeline import pipeline
from conveyor.core.step import step
from conveyor.fluent import get_tracker
from conveyor.runtime.runner import run_pipeline


@step
def first(start: int) -> int:
    return start


@step
def inc(x: int) -> int:
    return x + 1


@pipeline
def chain_int(start: int = 0, steps: int = N_STEPS):
    x = first(start)
    for _ in range(1, steps):
        x = inc(x)


def main(argv: list[str]) -> None:
    steps = int(argv[argv.index("--steps") + 1]) if "--steps" in argv else N_STEPS
    start = random.randrange(2**40) if "--fresh" in argv else 0
    tracker = get_tracker()  # opening the stores is start-up, not pipeline time
    t0 = time.perf_counter()
    result = run_pipeline(
        chain_int, {"start": start, "steps": steps}, cache="--cache" in argv, tracker=tracker
    )
    took = time.perf_counter() - t0
    cached = sum(s.cached for s in result.steps.values())
    for name, s in result.steps.items():
        print(f"step {name} {s.status.value}{' cached' if s.cached else ''}")
    print(f"conveyor: {len(result.steps)} steps, {cached} cached, {result.status.value}")
    print(f"pipeline_s={took:.4f} output={result.outputs}")
    assert result.outputs == {result.terminal[0]: start + steps - 1}


if __name__ == "__main__":
    main(sys.argv[1:])
