"""One table from the logs that benchmarks/gpu.sh writes: each figure next to its target (issue 13).

    python benchmarks/gpu_summary.py /tmp/pare_gpu_bench [--small]

Reads FOLDER/env.log and FOLDER/NAME.log (NAME: smpl render model train input occlusion), each ending with the
line "[gpu.sh] exit RC after S s". A figure found in the log of a run that failed or timed out is still shown,
marked partial. The targets are for an H100 or H200 with 16 CPU cores: "met?" says n/a on a CPU or with --small.
"""
import argparse
import os
import re

NUMBER = r"(\d+(?:\.\d+)?)"


def read(folder, name):
    path = os.path.join(folder, f"{name}.log")
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        return f.read()


def trouble(text, name):
    """'' when the run ended well, else what went wrong."""
    if text is None:
        return "not run"
    found = re.search(r"^\[gpu\.sh\] exit (\d+)", text, re.M)
    if not found:
        return f"unfinished (see {name}.log)"
    rc = int(found.group(1))
    return "" if rc == 0 else "timeout" if rc in (124, 137) else f"failed, exit {rc} (see {name}.log)"


def smpl(text):
    """Rows "batch smplx smpl_jax ratio joints ratio"; the largest batch."""
    rows = re.findall(rf"^\s*(\d+)\s+\S+\s+{NUMBER}\s+\S+x\s", text, re.M)
    batch, rate = max(rows, key=lambda row: int(row[0]), default=(None, None))
    return [("SMPL forward bodies/s, batch 4096", rate and float(rate), f"batch {batch}", ">=", 2e6)]


def render(text):
    meshes = dict(re.findall(rf"^([^\n:]+): [^\n]*\n\s*pare_jax\.render part labels\s+{NUMBER} maps/s", text, re.M))
    batch = re.search(r"batch (\d+)", text)
    note = f"batch {batch.group(1)}" if batch else ""
    rate = lambda name: float(meshes[name]) if name in meshes else None  # noqa: E731
    return [("part-label maps/s, 224 px, 13,776 faces", rate("body-like mesh"), note, ">=", 5000),
            ("  the open body, 26,972 faces", rate("open body"), note, None, None)]


def model(text):
    """Rows "backbone batch dtype ours torch ratio compile"; the fastest."""
    rows = re.findall(rf"^(\w+)\s+(\d+)\s+(\w+)\s+{NUMBER}\s", text, re.M)
    best = max(rows, key=lambda row: float(row[3]), default=None)
    note = f"{best[0]}, {best[2]}, batch {best[1]}" if best else ""
    return [("PARE HRNet-W32 inference img/s, bfloat16", best and float(best[3]), note, ">=", 3000)]


def train(text):
    setup = re.search(r"device: .*?, (\w+), (\d+) px, batch (\d+), (\w+);", text)
    rate = re.search(rf"^\s*(?:nan|{NUMBER})\s+{NUMBER}\s+\S+x\s*$", text, re.M)
    mfu = re.search(rf"model FLOP utilisation: {NUMBER}% of (\d+) TFLOP/s", text)
    memory = re.search(r"peak device memory: (.+)", text)
    note = "{}, {} px, batch {}, {}".format(*setup.groups()) if setup else ""
    return [("training img/s, bfloat16, batch 64", rate and float(rate.group(2)), note, ">=", 1500),
            ("  model FLOP utilisation (%)", mfu and float(mfu.group(1)),
             f"of {mfu.group(2)} TFLOP/s" if mfu else "printed on an H100 or H200 only", None, None),
            ("  peak device memory", memory and memory.group(1).strip(), "", None, None)]


def input_pipeline(text):
    rate = re.search(r"^\s*train \(augmented\)\s+(\d+)", text, re.M)
    setup = re.search(r"^(\d+) cores .*?, batch (\d+), (\d+) px", text, re.M)
    note = "{} cores, batch {}, {} px".format(*setup.groups()) if setup else ""
    return [("input pipeline examples/s, augmented", rate and float(rate.group(1)), note, ">=", 1500)]


def occlusion(text):
    """The whole grid's seconds as printed on a GPU; elsewhere estimated from the rate on the timed positions."""
    whole = re.search(rf"whole (\d+) x (\d+) grid of one (\d+) px image: {NUMBER} s", text)
    setup = re.search(r"^(\w+) at (\d+) px.*grid (\d+) x (\d+), timing (\d+) positions", text, re.M)
    rate = re.search(rf"^ours \(chunked, jitted\)\s+{NUMBER}", text, re.M)
    label = "occlusion: whole 28 x 28 grid, one 224 px image (s)"
    if whole:
        return [(label, float(whole.group(4)), "{} x {} grid, {} px".format(*whole.groups()[:3]), "<", 1.0)]
    if setup and rate:
        backbone, size, rows, cols, timed = setup.groups()
        return [(label, int(rows) * int(cols) / float(rate.group(1)),
                 f"{backbone}, {rows} x {cols} grid, {size} px, from {timed} positions", "<", 1.0)]
    return [(label, None, "", "<", 1.0)]


PARSERS = {"smpl": smpl, "render": render, "model": model, "train": train, "input": input_pipeline,
           "occlusion": occlusion}


def figure(value):
    if isinstance(value, str):
        return value
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--small", action="store_true", help="a rehearsal with tiny sizes: no target applies")
    args = parser.parse_args()
    env = read(args.folder, "env") or ""
    logs = {name: read(args.folder, name) for name in PARSERS}
    everything = "\n".join(text for text in logs.values() if text)
    device = re.search(r"^(?:device: |jax \S+ on )([^(\n]+?) \((cpu|gpu|cuda|rocm|tpu)\)", everything, re.M)
    gpu = re.search(r"^nvidia-smi: (?!not found)(.+)", env, re.M)
    jax_version = re.search(r"^jax: (\S+)", env, re.M)
    date = re.search(r"^date: ([^;]+)", env, re.M)
    on_cpu = device is not None and device.group(2) == "cpu"
    print(f"device: {gpu.group(1) if gpu else device.group(1) if device else 'unknown'}"
          f" ({device.group(2) if device else 'backend unknown'}); jax {jax_version.group(1) if jax_version else '?'}"
          f"; {date.group(1) if date else 'date unknown'}" + ("; SMALL rehearsal sizes" if args.small else ""))

    table = [("benchmark", "measured", "target", "met?")]
    for name, parse in PARSERS.items():
        text, problem = logs[name], trouble(logs[name], name)
        for label, value, note, op, target in parse(text or ""):
            if value is None:
                measured = problem or (note if text and note else f"not found in {name}.log")
            else:
                measured = figure(value) + (f" ({note})" if note else "") + (f" [{problem}; partial]" if problem
                                                                            else "")
            if op is None:
                goal, met = "", ""
            else:
                goal = f"{op} {figure(target)}"
                met = "n/a" if args.small or on_cpu or value is None else \
                    ("yes" if (value >= target if op == ">=" else value < target) else "NO")
            table.append((label, measured, goal, met))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for i, row in enumerate(table):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


if __name__ == "__main__":
    main()
