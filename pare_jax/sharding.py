"""Data parallelism: a ("data",) mesh over every device of every process; batches on P("data"), state replicated.

Under jit over this mesh BatchNorm statistics are computed over the global batch (synchronised BN), unlike the
authors' per-GPU BN; with one device the two are the same.
"""
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
    return jax.device_put(tree, replicated(mesh))
