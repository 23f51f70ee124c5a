"""conveyor shape (b): 20 steps passing a 1,000,000 x 4 DataFrame (caching off).

Step 1 builds the frame (``shape.make_df``, unseeded: new content every run);
steps 2..20 take it and return it unchanged. The frame is written once, as
Parquet, to the artifact store; the next steps receive the object itself and,
seeing it unchanged by its fingerprint, reuse its artifact.
"""

import os
import sys
import time

sys.path.append(os.environ.get("CONVEYOR_PIPEPEERS_DIR", "/work/shared/peers/pipelines"))

import pandas as pd
from shape import N_STEPS, make_df

from conveyor.core.pipeline import pipeline
from conveyor.core.step import step
from conveyor.fluent import get_tracker
from conveyor.runtime.runner import run_pipeline


@step
def make() -> pd.DataFrame:
    return make_df()


@step
def pass_df(df: pd.DataFrame) -> pd.DataFrame:
    return df


@pipeline
def chain_df():
    df = make()
    for _ in range(1, N_STEPS):
        df = pass_df(df)


if __name__ == "__main__":
    tracker = get_tracker()  # opening the stores is start-up, not pipeline time
    t0 = time.perf_counter()
    result = run_pipeline(chain_df, cache=False, tracker=tracker)
    took = time.perf_counter() - t0
    for name, s in result.steps.items():
        print(f"step {name} {s.status.value} {s.duration_s * 1000:.1f}ms")
    digests = {s.digests["output"].sha256 for s in result.steps.values()}
    print(f"conveyor: {len(result.steps)} steps, 0 cached, {result.status.value}")
    print(f"pipeline_s={took:.4f} distinct_artifacts={len(digests)}")
