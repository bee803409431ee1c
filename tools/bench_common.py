"""Timing shared by the benchmark scripts (bench_cnn.py, bench_onnx.py, bench_inference.py,
bench_training.py): a framework's calls timed one by one in Python, `lamina bench --json`'s own timing
read back, rounds summarized, and the load average printed beside the figures.

The scripts import it as `import bench_common` (Python puts the script's folder, tools/, on the path).
"""

import json
import os
import statistics
import subprocess
import time


def time_calls(call, runs, min_seconds=1.0, warmup=10, max_calls=None):
    """Seconds per call: at least `runs` calls and `min_seconds` in total (but at most `max_calls`
    calls, when given), after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    samples, total = [], 0.0
    while len(samples) < runs or total < min_seconds:
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        samples.append(elapsed)
        total += elapsed
        if max_calls is not None and len(samples) >= max_calls:
            break
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": len(samples)}


def lamina_timing(command, key="compiled"):
    """Runs a `lamina bench ... --json` command and returns the timing it printed under `key`
    ("compiled", or "train step" with --train) as median, min, max and runs."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr.strip()[:2000]}")
    timing = json.loads(result.stdout.strip().splitlines()[-1])[key]
    return {"median": timing["median_seconds"], "min": timing["min_seconds"], "max": timing["max_seconds"],
            "runs": timing["runs"]}


def summarize(rounds):
    """Rounds of `time_calls` or `lamina_timing` results as one: the median of the rounds' medians, the
    smallest min, the largest max, every run, and the rounds' medians."""
    return {"median": statistics.median(r["median"] for r in rounds), "min": min(r["min"] for r in rounds),
            "max": max(r["max"] for r in rounds), "runs": sum(r["runs"] for r in rounds),
            "round medians": [r["median"] for r in rounds]}


def load_average():
    """The 1, 5 and 15-minute load averages as text ("1.52 1.30 1.10")."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())
