"""Where a PARE training step spends its time: ours (JAX) next to the same network in torch.nn, stage by stage.

    python benchmarks/profile_train_step.py                       # HRNet-W32, 224 px, batch 8, float32
    python benchmarks/profile_train_step.py --backbone resnet50
    python benchmarks/profile_train_step.py --ops 15              # also our top XLA ops (xprof trace)

Each stage is timed on its own (jitted separately on our side, so XLA cannot fuse across stages) with the
other side's same stage right after it (best of --repeats, in turns, so both see the same background load):
  backbone forward            training mode (BatchNorm batch statistics)
  backbone forward+backward   gradient of the parameters for a given output gradient
  ... without batch stats     the same with BatchNorm in inference mode: the difference is what the batch
                              statistics (and their gradients) cost
  head forward+backward       PARE's head from the backbone features (gradient of parameters and features)
  SMPL + losses fwd+bwd       ours only: the 49 joints, projection and every PARE loss from the head outputs
                              (the torch reference has no SMPL; its losses are in the head row)
  optimizer update            Adam over every parameter
  host -> device input        ours only: device_put of the batch (torch trains on host memory)
  whole step                  the real step (benchmarks/train_step.py's), for comparison with the sum
--ops N also traces one whole step with jax.profiler and lists the N XLA ops with the most time (a convolution
runs asynchronously on XLA:CPU, so its trace event times only its launch: use the stage rows for convolutions).
Peak host memory (ru_maxrss) of the process is printed at the end.
"""
import argparse
import collections
import glob
import os
import re
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pare_jax  # noqa: E402,F401  (XLA flags before jax starts)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import smpl_jax  # noqa: E402
from pare_jax import losses, schedules  # noqa: E402
from pare_jax.models.pare import build_model, smpl_outputs  # noqa: E402
from pare_jax.train_step import init_train_state, make_train_step  # noqa: E402
from timing import interleaved_best  # noqa: E402
from train_step import loss_config, random_batch  # noqa: E402


def _ready(tree):
    return jax.block_until_ready(tree)


def _cotangent(tree, rng):
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), tree)


def ours(backbone_name, batch, size):
    """{stage: callable} for our side."""
    rng = np.random.default_rng(0)
    model = build_model(dict(backbone=backbone_name, head="pare"), rngs=nnx.Rngs(0))
    data = random_batch(batch, size, rng)
    images = jnp.asarray(data["img"])
    b_graph, b_params, b_rest = nnx.split(model.backbone, nnx.Param, ...)
    e_graph, e_params, e_rest = nnx.split(nnx.view(model.backbone, use_running_average=True), nnx.Param, ...)
    h_graph, h_params, h_rest = nnx.split(model.head, nnx.Param, ...)

    fresh = lambda tree: jax.tree.map(lambda v: v, tree)  # noqa: E731  (new Variables at the current trace level)

    def backbone_fwd(params, rest, x, graph=b_graph):
        return nnx.merge(graph, fresh(params), fresh(rest))(x)

    features = jax.jit(backbone_fwd)(b_params, b_rest, images)
    feature_ct = _cotangent(features, rng)

    def backbone_grad(params, rest, x, ct, graph=b_graph):
        return jax.grad(lambda p, r: jnp.vdot(backbone_fwd(p, r, x, graph), ct))(params, rest)

    def head_grad(params, rest, f, cts):
        def objective(p, f, r):
            out = nnx.merge(h_graph, fresh(p), fresh(r))(f)
            return sum(jnp.vdot(out[k], cts[k]) for k in cts)
        return jax.grad(objective, argnums=(0, 1))(params, f, rest)

    head_out = jax.jit(lambda p, r, f: nnx.merge(h_graph, fresh(p), fresh(r))(f))(h_params, h_rest, features)
    head_ct = _cotangent(head_out, rng)
    body = smpl_jax.load("open")
    weights = schedules.loss_weights(loss_config(), 0)
    labels = jax.device_put(data)

    def smpl_losses_grad(out, labels, body):
        def objective(out):
            full = out | smpl_outputs(body, out["pred_pose"], out["pred_shape"], out["pred_cam"], return_verts=False)
            return losses.pare_losses(full, labels, weights, "parts")[0]
        return jax.grad(objective)(out)

    optim = dict(lr=1e-4, schedule="constant", warmup_steps=0, b1=0.9, b2=0.999, grad_clip_norm=0.0)
    import ml_collections
    tx = schedules.optimizer(ml_collections.ConfigDict(optim), 1000)
    params = nnx.state(model, nnx.Param)
    opt_state = tx.init(params)
    grads = _cotangent(params, rng)

    def update(params, opt_state, grads):
        import optax
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    graphdef, state = init_train_state(model, tx)
    step = jax.jit(make_train_step(graphdef, tx, loss_config(), "parts", "float32"))
    compiled = {
        "backbone forward": (jax.jit(backbone_fwd), (b_params, b_rest, images)),
        "backbone forward+backward": (jax.jit(backbone_grad), (b_params, b_rest, images, feature_ct)),
        "  ... without batch stats": (jax.jit(lambda p, r, x, ct: backbone_grad(p, r, x, ct, e_graph)),
                                      (e_params, e_rest, images, feature_ct)),
        "head forward+backward": (jax.jit(head_grad), (h_params, h_rest, features, head_ct)),
        "SMPL + losses fwd+bwd": (jax.jit(smpl_losses_grad), (head_out, labels, body)),
        "optimizer update": (jax.jit(update), (params, opt_state, grads)),
        "whole step": (step, (state, labels, body)),
    }
    runs = {}
    for name, (fn, args) in compiled.items():
        exe = fn.lower(*args).compile()
        runs[name] = (lambda exe=exe, args=args: _ready(exe(*args)))
    runs["host -> device input"] = lambda: _ready(jax.device_put(data))
    return runs, (step, state, labels, body)


def reference(backbone_name, batch, size):
    """{stage: callable} for the torch.nn side (pare_jax.convert.torch_reference)."""
    import torch
    import torch.nn.functional as F

    from pare_jax.convert.torch_reference import build_reference
    from pare_jax.models.config import ModelConfig
    net = build_reference(ModelConfig(backbone=backbone_name)).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    images = torch.tensor(rng.normal(size=(batch, 3, size, size)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 25, (batch, size, size)), dtype=torch.long)
    with torch.no_grad():
        features = net.backbone(images)
    feature_ct = torch.randn_like(features)

    def backbone(train=True):
        net.backbone.train(train)
        net.backbone(images).backward(feature_ct)
        net.backbone.train(True)

    def head():
        f = features.clone().requires_grad_(True)
        out = net.head(f)
        sum((v * torch.ones_like(v)).sum() for v in out.values()).backward()

    def loss_of(out):
        logits = F.interpolate(out["pred_segm_mask"], size=(size, size), mode="bilinear", align_corners=False)
        return 60 * F.cross_entropy(logits, labels) + 60 * out["pred_pose"].square().mean() \
            + 0.06 * out["pred_shape"].square().mean() + 60 * torch.exp(-10 * out["pred_cam"][:, 0]).square().mean()

    def whole():
        opt.zero_grad()
        loss_of(net(images)).backward()
        opt.step()

    whole()  # creates Adam's state and the gradients that the optimizer row reuses

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    return {
        "backbone forward": no_grad(lambda: net.backbone(images)),
        "backbone forward+backward": backbone,
        "  ... without batch stats": lambda: backbone(False),
        "head forward+backward": head,
        "optimizer update": opt.step,
        "whole step": whole,
    }


def top_ops(step, state, batch, body, count):
    """[(seconds, opcode, op name)] of the `count` XLA ops with the most trace time in one whole step."""
    compiled = step.lower(state, batch, body).compile()
    info = {}
    for line in compiled.as_text().splitlines():
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = \S+ ([\w-]+)\(", line)
        if match:
            op_name = re.search(r'op_name="([^"]*)"', line)
            info[match.group(1)] = (match.group(2), op_name.group(1) if op_name else "")
    _ready(compiled(state, batch, body))
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        _ready(compiled(state, batch, body))
        jax.profiler.stop_trace()
        profile = jax.profiler.ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[-1])
    seconds = collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            for event in line.events:
                op = dict(event.stats).get("hlo_op")
                if op:
                    seconds[op] += event.duration_ns / 1e9
    return [(s, *info.get(op, ("?", "")), op) for op, s in seconds.most_common(count)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="hrnet_w32", choices=["hrnet_w32", "resnet50", "hrnet_w8", "hrnet_tiny"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ops", type=int, default=0, help="list our N most expensive XLA ops of a whole step")
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()
    if args.ops:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
    import torch
    torch.set_num_threads(os.cpu_count())
    our_runs, whole = ours(args.backbone, args.batch, args.size)
    ref_runs = {} if args.no_reference else reference(args.backbone, args.batch, args.size)
    print(f"{args.backbone}, {args.size} px, batch {args.batch}, float32, {os.cpu_count()} CPU cores, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'stage':28} {'ours ms':>9} {'torch ms':>9} {'torch/ours':>10}")
    for name, run in our_runs.items():
        runs = [run] + ([ref_runs[name]] if name in ref_runs else [])
        best = interleaved_best(runs, args.repeats) + [float("nan")]
        print(f"{name:28} {best[0] * 1e3:9.1f} {best[1] * 1e3:9.1f} {best[1] / best[0]:9.2f}x", flush=True)
    if args.ops:
        print(f"our {args.ops} most expensive XLA ops in one whole step (trace time; convolutions: launch only)")
        for seconds, opcode, op_name, op in top_ops(*whole, args.ops):
            print(f"  {seconds * 1e3:8.1f} ms  {opcode:12} {op:32} {op_name[-90:]}")
    print(f"peak host memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB; "
          f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
