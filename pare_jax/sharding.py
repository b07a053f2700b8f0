"""Data parallelism: a ("data",) mesh over every device of every process; batches on P("data"), state replicated.

Under jit over this mesh BatchNorm statistics are computed over the global batch (synchronised BN), unlike the
authors' per-GPU BN; with one device the two are the same.
"""
import itertools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_mesh(devices=None):
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def batch_sharding(mesh):
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh):
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(global_batch_size, mesh):
    """The global batch must split evenly over the devices, and each process feeds its share."""
    devices = mesh.devices.size
    if global_batch_size % devices:
        raise ValueError(f"batch size {global_batch_size} does not split over {devices} devices: use a multiple "
                         f"of {devices} (--config.batch_size=...)")
    return global_batch_size // jax.process_count()


def global_batch(host_batch, mesh):
    """This process's slice of the batch (dict of numpy arrays, leading axis = per-process batch) -> global
    jax.Arrays sharded over the mesh's data axis."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), host_batch)


def replicate(tree, mesh):
    """A copy of `tree` on every device of the mesh. With several processes device_put cannot reach the other
    processes' devices: each process then contributes its own (identical) copy."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, tree)


def barrier(name, timeout_s):
    """Wait until every process reaches `name` (unique per call); no-op with one process. Through the
    coordination service rather than a device collective: CPU collectives (gloo) give up after 30 s, and one
    process may keep the others waiting for hours (building a dataset)."""
    if jax.process_count() > 1:
        import orbax.checkpoint as ocp
        ocp.multihost.sync_global_processes(name, timeout=int(timeout_s))


_aligned_ids = itertools.count()  # barrier names must be unique


def aligned(jitted, name):
    """A jitted function whose first call, with several processes, compiles ahead of time and waits for every
    process before running. The first cross-process collective sets up gloo's connections and gives up after 30
    s; a process that compiles faster (a less loaded host) would otherwise reach it that much earlier."""
    if jax.process_count() == 1:
        return jitted
    compiled = {}

    def call(*args):
        if "fn" not in compiled:
            compiled["fn"] = jitted.lower(*args).compile()
            barrier(f"compiled_{name}_{next(_aligned_ids)}", timeout_s=3600)
        return compiled["fn"](*args)

    return call


