"""Timing shared by the benchmark scripts."""
import time


def interleaved_best(runs, repeats):
    """Best time of each callable, timing them in turns so that both see the same background load."""
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return best
