"""Checkpoint conversion: coverage of the authors' parameter lists, layer-by-layer and whole-model parity with
torch.nn, the safe loader (including a malicious pickle), the command line and the Orbax weights directory."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
F = torch.nn.functional

from pare_jax.convert import (CheckpointFileError, assign_weights, convert_state_dict, load_model,  # noqa: E402
                              load_state_dict, model_weights, restore_into, restricted_load, save_model,
                              torch_mapping)
from pare_jax.convert.__main__ import main as convert_main  # noqa: E402
from pare_jax.convert.mapping import is_ignored_torch_key, to_flax_array  # noqa: E402
from pare_jax.convert.torch_reference import build_reference  # noqa: E402
from pare_jax.models import abstract_model, build_model, predict  # noqa: E402
from pare_jax.models import layers  # noqa: E402

# Parameter names and shapes of the authors' released checkpoints (facts from the project's reference folder).
REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
JSON_FILES = {"hrnet_w32": "official_pare_hrnet_w32_state_dict.json",
              "resnet50": "official_pare_resnet50_state_dict.json"}
ATOL = 1e-4


def official_shapes(backbone, fallback_to_reference=False):
    """Names and shapes of the released model (the JSON lists), or, where the lists are not at hand, of the
    torch.nn reference, which test_torch_reference_has_the_official_names_and_shapes ties to the lists."""
    path = os.path.join(REFERENCE, JSON_FILES[backbone])
    if os.path.isfile(path):
        with open(path) as f:
            return {k: tuple(v) for k, v in json.load(f)["state_dict"].items()}
    if not fallback_to_reference:
        pytest.skip(f"{path} not available")
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build_reference(dict(backbone=backbone)).state_dict().items()}


def numpy_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def load_torch_layer(flax_layer, torch_layer):
    """Convert a torch layer's state dict with the converter's mapping and load it into the Flax layer."""
    mapping, state = torch_mapping(flax_layer), numpy_state(torch_layer)
    state = {k: v for k, v in state.items() if not is_ignored_torch_key(k)}
    assert set(mapping) == set(state)
    assign_weights(flax_layer, {mapping[k].flax_path: to_flax_array(mapping[k], k, v) for k, v in state.items()})


def randomize(net, seed=0):
    """Weights with O(1) activations and non-trivial BatchNorm statistics, so parity is not vacuous."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith("running_var") or (t.ndim == 1 and name.endswith("weight")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.ndim <= 1:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            else:
                fan_in = t.shape[2] if "pose_mlp" in name else t[0].numel()
                if "deconv" in name and t.ndim == 4 and t.shape[-1] == 4:  # transposed: 4 taps reach each output
                    fan_in = t.shape[0] * 4
                t.copy_(torch.randn(t.shape, generator=g) / fan_in ** 0.5)
    return net.eval()


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --- every tensor of the released models is mapped ---------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["hrnet_w32", "resnet50"])
def test_every_official_tensor_is_mapped_with_its_shape(backbone):
    official = official_shapes(backbone, fallback_to_reference=True)
    model = abstract_model(dict(backbone=backbone))  # jax.ShapeDtypeStruct leaves, no weights
    mapping = torch_mapping(model)
    kept = {k: v for k, v in official.items() if not is_ignored_torch_key(k)}
    assert sorted(set(kept) ^ set(mapping)) == []
    assert {k: mapping[k].torch_shape for k in kept} == kept
    # and the converter consumes a checkpoint with exactly these keys, filling every model variable
    checkpoint = {f"model.{k}": np.zeros(s, np.float32) for k, s in official.items()}
    weights = convert_state_dict(checkpoint, dict(backbone=backbone))
    variables = model_weights(model)
    assert set(weights) == set(variables)
    assert all(weights[p].shape == variables[p].shape for p in variables)


@pytest.mark.parametrize("backbone", ["hrnet_w32", "resnet50"])
def test_torch_reference_has_the_official_names_and_shapes(backbone):
    with torch.device("meta"):
        net = build_reference(dict(backbone=backbone))
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == official_shapes(backbone)


# --- layer by layer against torch.nn -----------------------------------------------------------------------------

def test_conv_layers():
    x = rand(2, 9, 9, 5)
    for torch_conv, flax_conv in (
            (torch.nn.Conv2d(5, 7, 3, 2, 1, bias=False), layers.conv(5, 7, 3, 2, rngs=nnx.Rngs(0))),
            (torch.nn.Conv2d(5, 7, 1, bias=True), nnx.Conv(5, 7, (1, 1), rngs=nnx.Rngs(0))),
            (torch.nn.Conv2d(5, 7, 7, 2, 3, bias=False),
             nnx.Conv(5, 7, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False, rngs=nnx.Rngs(0)))):
        load_torch_layer(flax_conv, torch_conv)
        with torch.no_grad():
            ref = torch_conv(nchw(x)).numpy()
        with jax.default_matmul_precision("highest"):
            np.testing.assert_allclose(nchw(flax_conv(jnp.asarray(x))), ref, atol=1e-5)


def test_transposed_conv_is_a_flipped_kernel_dilated_conv():
    torch_layer = torch.nn.ConvTranspose2d(5, 6, 4, 2, 1, bias=False)
    flax_layer = layers.TransposedConv(5, 6, rngs=nnx.Rngs(0))
    load_torch_layer(flax_layer, torch_layer)
    x = rand(2, 7, 7, 5)
    with torch.no_grad():
        ref = torch_layer(nchw(x)).numpy()
    with jax.default_matmul_precision("highest"):
        out = flax_layer(jnp.asarray(x))
    assert out.shape == (2, 14, 14, 6)
    np.testing.assert_allclose(nchw(out), ref, atol=1e-5)


def test_batch_norm_eval_and_training_match_torch():
    torch_bn = randomize(torch.nn.BatchNorm2d(6))
    flax_bn = layers.batch_norm(6, nnx.Rngs(0))
    load_torch_layer(flax_bn, torch_bn)
    x = rand(4, 5, 5, 6) * 3 + 1
    with torch.no_grad():
        np.testing.assert_allclose(nchw(flax_bn(jnp.asarray(x), use_running_average=True)),
                                   torch_bn(nchw(x)).numpy(), atol=1e-5)
        torch_bn.train()
        ref = torch_bn(nchw(x)).numpy()
    np.testing.assert_allclose(nchw(flax_bn(jnp.asarray(x))), ref, atol=1e-4)
    np.testing.assert_allclose(flax_bn.mean[...], torch_bn.running_mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(flax_bn.var[...], torch_bn.running_var.numpy(), atol=1e-5)


@pytest.mark.parametrize("size_in,size_out", [((7, 7), (14, 14)), ((7, 5), (56, 13)), ((1, 3), (4, 9))])
def test_bilinear_align_corners(size_in, size_out):
    x = rand(2, *size_in, 3)
    ref = F.interpolate(nchw(x), size=size_out, mode="bilinear", align_corners=True).numpy()
    np.testing.assert_allclose(nchw(layers.resize_bilinear_align_corners(jnp.asarray(x), size_out)), ref, atol=1e-5)


def test_max_pool_and_nearest_upsampling():
    x = rand(2, 9, 9, 3) - 2.0
    np.testing.assert_array_equal(nchw(layers.max_pool_3x3_stride2(jnp.asarray(x))),
                                  torch.nn.MaxPool2d(3, 2, 1)(nchw(x)).numpy())
    np.testing.assert_array_equal(nchw(layers.upsample_nearest(jnp.asarray(x), 4)),
                                  torch.nn.Upsample(scale_factor=4, mode="nearest")(nchw(x)).numpy())


def test_per_joint_linear_and_linear():
    weight = torch.randn(1, 6, 5, 24, 1, 1)
    holder = torch.nn.Module()
    holder.weight = torch.nn.Parameter(weight)
    flax_layer = layers.PerJointLinear(24, 5, 6, rngs=nnx.Rngs(0))
    load_torch_layer(flax_layer, holder)
    x = rand(3, 5, 24)  # [N, C, J] as the authors' attention returns it
    ref = np.einsum("ocj,ncj->noj", weight[0, :, :, :, 0, 0].numpy(), x)  # spec: out[n,o,j] = sum_c W[0,o,c,j] x
    with jax.default_matmul_precision("highest"):
        out = flax_layer(jnp.asarray(x.transpose(0, 2, 1)))
    np.testing.assert_allclose(np.asarray(out).transpose(0, 2, 1), ref, atol=1e-5)
    torch_linear, flax_linear = torch.nn.Linear(8, 3), nnx.Linear(8, 3, rngs=nnx.Rngs(0))
    load_torch_layer(flax_linear, torch_linear)
    x = rand(4, 8)
    with torch.no_grad(), jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(flax_linear(jnp.asarray(x)), torch_linear(torch.from_numpy(x)).numpy(), atol=1e-5)


# --- whole models --------------------------------------------------------------------------------------------------

def torch_outputs(net, x):
    with torch.no_grad():
        return {k: v.numpy() for k, v in net(nchw(x)).items()}


def assert_outputs_match(out, ref):
    for key, value in ref.items():
        got = np.asarray(out[key])
        np.testing.assert_allclose(nchw(got) if key == "pred_segm_mask" else got, value, atol=ATOL, rtol=0,
                                   err_msg=key)


@pytest.mark.parametrize("config", [
    dict(backbone="hrnet_tiny"),
    dict(backbone="resnet_tiny"),
    dict(backbone="resnet_tiny", head="hmr"),
    dict(backbone="resnet_tiny", attention="pool", part_supervision="joints", mean_offset="pose_shape_cam"),
], ids=["hrnet-pare", "resnet-pare", "resnet-hmr", "resnet-pool-joints-mean"])
def test_converted_model_matches_torch(config):
    torch.manual_seed(0)
    net = randomize(build_reference(config))
    model = build_model(config, rngs=nnx.Rngs(1))
    assign_weights(model, convert_state_dict(numpy_state(net), config))
    x = rand(2, 64, 64, 3, seed=1)
    with jax.default_matmul_precision("highest"):
        out = predict(model, None, jnp.asarray(x))
    ref = torch_outputs(net, x)
    assert np.abs(ref["pred_shape"]).max() > 0.1  # activations did not vanish
    assert_outputs_match(out, ref)


def test_converter_names_unused_missing_and_misshapen_tensors(caplog):
    config = dict(backbone="resnet_tiny", head="hmr")
    state = {f"model.{k}": v for k, v in numpy_state(build_reference(config)).items()}
    # not network weights: skipped, and said so
    extra = {"model.smpl.shapedirs": np.zeros((5, 3, 10)), "criterion.weights": np.ones(3)}
    assert len(convert_state_dict(state | extra, config)) == len(convert_state_dict(state, config))
    assert "model.smpl.shapedirs" not in caplog.text and "smpl.shapedirs" in caplog.text
    assert "criterion.weights" in caplog.text
    with pytest.raises(ValueError, match=r"unused checkpoint tensors \(1\): \['head.extra.weight'\]"):
        convert_state_dict(state | {"model.head.extra.weight": np.zeros(3)}, config)
    with pytest.raises(ValueError, match=r"without a tensor \(1\): \['head.fc2.bias'\]"):
        convert_state_dict({k: v for k, v in state.items() if k != "model.head.fc2.bias"}, config)
    with pytest.raises(ValueError, match=r"head.deccam.weight: checkpoint shape \(3, 7\)"):
        convert_state_dict(state | {"model.head.deccam.weight": np.zeros((3, 7))}, config)


def test_backbone_only_sources(tmp_path):
    hrnet = numpy_state(build_reference(dict(backbone="hrnet_tiny")).backbone)
    coco = {k: v for k, v in hrnet.items() if not k.startswith(("upsample_stage", "final_layer"))}
    coco |= {"final_layer.weight": np.zeros((17, 4, 1, 1)), "final_layer.bias": np.zeros(17)}  # COCO's 17 joints
    weights = convert_state_dict(coco, dict(backbone="hrnet_tiny"), source="hrnet_coco")
    assert weights and all(p[0] == "backbone" and not str(p[1]).startswith(("upsample", "final")) for p in weights)
    resnet = numpy_state(build_reference(dict(backbone="resnet_tiny")).backbone)
    imagenet = resnet | {"fc.weight": np.zeros((1000, 64)), "fc.bias": np.zeros(1000)}
    weights = convert_state_dict(imagenet, dict(backbone="resnet_tiny"), source="resnet_imagenet")
    assert len(weights) == len([k for k in resnet if not is_ignored_torch_key(k)])
    with pytest.raises(ValueError, match="without a tensor.*backbone.layer1.0.conv1.weight"):
        convert_state_dict({k: v for k, v in imagenet.items() if k != "layer1.0.conv1.weight"},
                           dict(backbone="resnet_tiny"), source="resnet_imagenet")
    with pytest.raises(ValueError, match="resnet50 backbone"):
        convert_state_dict(imagenet, dict(backbone="hrnet_tiny"), source="resnet_imagenet")
    # written as a backbone initialisation and restored into a fresh model
    torch.save({k: torch.from_numpy(v) for k, v in imagenet.items()}, tmp_path / "resnet.pth")
    convert_main([str(tmp_path / "resnet.pth"), str(tmp_path / "init"), "--source", "resnet_imagenet",
                  "--backbone", "resnet_tiny"])
    model = build_model(dict(backbone="resnet_tiny"), rngs=nnx.Rngs(0))
    restored = restore_into(model, str(tmp_path / "init"))
    assert len(restored) == len(weights)
    np.testing.assert_array_equal(model.backbone.layer4[0].conv1.kernel[...],
                                  resnet["layer4.0.conv1.weight"].transpose(2, 3, 1, 0))
    with pytest.raises(ValueError, match="backbone weights only"):
        load_model(str(tmp_path / "init"))


# --- files: Lightning checkpoints, unsafe pickles, Orbax ----------------------------------------------------------

class HyperParameters:
    """Stands for what a Lightning .ckpt keeps besides tensors; torch's weights_only loader refuses it."""

    def __init__(self):
        self.lr = 1e-4


MARKER = "pare_jax_pickle_ran_code"


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ExecExploit(Exploit):
    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_lightning_checkpoint_converts_end_to_end(tmp_path):
    config = dict(backbone="resnet_tiny")
    torch.manual_seed(0)
    net = randomize(build_reference(config))
    ckpt = {"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": HyperParameters(), "epoch": 3, "optimizer_states": [{"step": torch.tensor(5.0)}]}
    torch.save(ckpt, tmp_path / "pare.ckpt")
    assert convert_main([str(tmp_path / "pare.ckpt"), str(tmp_path / "flax")]) == 0
    model = load_model(str(tmp_path / "flax"))
    assert model.config.backbone == "resnet_tiny" and model.config.part_supervision == "parts"
    x = rand(2, 64, 64, 3, seed=2)
    with jax.default_matmul_precision("highest"):
        assert_outputs_match(predict(model, None, jnp.asarray(x)), torch_outputs(net, x))
    assert convert_main([str(tmp_path / "pare.ckpt"), str(tmp_path / "flax")]) == 2  # exists: refused


def test_malicious_pickle_does_not_run(tmp_path):
    markers = [tmp_path / f"{MARKER}_{i}" for i in range(3)]
    state = {"model.w": torch.ones(2)}
    torch.save({"state_dict": state, "callbacks": [Exploit(markers[0]), ExecExploit(markers[1])]},
               tmp_path / "evil.ckpt")
    loaded = load_state_dict(str(tmp_path / "evil.ckpt"))
    assert list(loaded) == ["model.w"] and not any(m.exists() for m in markers)
    obj, refused = restricted_load(str(tmp_path / "evil.ckpt"))
    assert "posix.system" in refused and any(name.endswith(".exec") for name in refused)
    assert all(type(c).__name__ == "Placeholder" for c in obj["callbacks"])
    with open(tmp_path / "evil.pkl", "wb") as f:  # a plain (non-zip) pickle: refused outright
        import pickle
        pickle.dump({"w": Exploit(markers[2])}, f)
    with pytest.raises(CheckpointFileError, match="cannot be read safely"):
        load_state_dict(str(tmp_path / "evil.pkl"))
    assert not any(m.exists() for m in markers)


def test_restricted_loader_rebuilds_tensors_exactly(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {"strided": base.t()[1:, ::2], "half": torch.randn(3, 2).half(), "long": torch.tensor([1, 2, 3]),
               "scalar": torch.tensor(7), "bf16": torch.randn(5).bfloat16(), "empty": torch.zeros(0, 3)}
    torch.save({"state_dict": tensors, "hp": HyperParameters()}, tmp_path / "t.ckpt")
    obj, refused = restricted_load(str(tmp_path / "t.ckpt"))
    assert refused == [f"{__name__}.HyperParameters"]
    for key, tensor in tensors.items():
        got = obj["state_dict"][key]
        want = tensor.float().numpy() if key == "bf16" else tensor.numpy()
        assert got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got, want.dtype), want)


def test_orbax_weights_round_trip(tmp_path):
    model = build_model(dict(backbone="resnet_tiny", head="hmr"), rngs=nnx.Rngs(3))
    save_model(str(tmp_path / "w"), model)
    loaded = load_model(str(tmp_path / "w"))
    original, restored = model_weights(model), model_weights(loaded)
    assert set(original) == set(restored)
    for path in original:
        np.testing.assert_array_equal(restored[path], original[path])
    with pytest.raises(FileNotFoundError, match="not a weights directory"):
        load_model(str(tmp_path))


# --- the command line on bad input: one line `error: ...`, exit code 2, nothing written ---------------------------

@pytest.fixture(scope="module")
def tiny_state_file(tmp_path_factory):
    """A bare state dict of the tiny HMR model (the fastest to convert)."""
    path = tmp_path_factory.mktemp("tiny") / "hmr_tiny.pth"
    torch.manual_seed(0)
    state = build_reference(dict(backbone="resnet_tiny", head="hmr")).state_dict()
    torch.save(state, path)
    return path, state


def _bad_input(kind, tmp_path, tiny_state_file):
    """(checkpoint path, extra arguments, expected message) of one kind of bad input."""
    good, state = tiny_state_file
    path = tmp_path / "in.pth"
    if kind == "missing":
        return tmp_path / "nope.ckpt", [], "nope.ckpt: no such file"
    if kind == "text":
        path.write_text("hello, this is not a checkpoint\n")
        return path, [], "in.pth: not a PyTorch checkpoint (KeyError"
    if kind == "empty":
        path.write_bytes(b"")
        return path, [], "in.pth: the file is empty"
    if kind == "zip_not_torch":
        import zipfile
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hi")
        return path, [], "in.pth: not a PyTorch checkpoint"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[:5000])
        return path, [], "in.pth: not a PyTorch checkpoint"
    changed = {"extra": dict(state, **{"head.extra.weight": torch.zeros(3)}),
               "missing_tensor": {k: v for k, v in state.items() if k != "head.fc2.bias"},
               "wrong_shape": dict(state, **{"head.deccam.weight": torch.zeros(3, 7)}),
               "not_a_tensor": dict(state, epoch=3)}[kind]
    torch.save(changed, path)
    return path, ["--backbone", "resnet_tiny", "--head", "hmr"], {
        "extra": r"unused checkpoint tensors (1): ['head.extra.weight']",
        "missing_tensor": r"model variables without a tensor (1): ['head.fc2.bias']",
        "wrong_shape": "head.deccam.weight: checkpoint shape (3, 7)",
        "not_a_tensor": "state-dict entries that are not tensors: ['epoch']"}[kind]


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "zip_not_torch", "truncated", "extra",
                                  "missing_tensor", "wrong_shape", "not_a_tensor"])
def test_convert_command_bad_input_is_one_error_line(kind, tmp_path, tiny_state_file, capsys):
    checkpoint, extra, message = _bad_input(kind, tmp_path, tiny_state_file)
    before = sorted(os.listdir(tmp_path))
    assert convert_main([str(checkpoint), str(tmp_path / "out")] + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temporary


def test_convert_overwrite_refuses_a_file_or_foreign_directory_before_writing(tmp_path, tiny_state_file, capsys):
    checkpoint, _ = tiny_state_file
    (tmp_path / "out").write_text("precious")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_text("precious")
    assert convert_main([str(checkpoint), str(tmp_path / "out"), "--overwrite"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert convert_main([str(checkpoint), str(tmp_path / "photos"), "--overwrite"]) == 2
    assert "is not a weights directory" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["out", "photos"] and (tmp_path / "out").read_text() == "precious"
    assert os.listdir(tmp_path / "photos") == ["a.jpg"]
    assert convert_main([str(checkpoint), str(tmp_path / "w")]) == 0
    assert convert_main([str(checkpoint), str(tmp_path / "w"), "--overwrite"]) == 0  # a weights directory: fine
    assert sorted(os.listdir(tmp_path)) == ["out", "photos", "w"]


def test_restricted_loader_refuses_crafted_tensor_records(tmp_path):
    from pare_jax.convert.torch_files import _rebuild_tensor
    storage = np.zeros(4, np.float32)
    with pytest.raises(CheckpointFileError, match="runs past its storage"):
        _rebuild_tensor(storage, 2, (3,), (1,))
    with pytest.raises(CheckpointFileError, match="values"):
        _rebuild_tensor(storage, 0, (10 ** 6, 10 ** 6), (0, 0))  # a zero stride repeating one stored value
    with pytest.raises(CheckpointFileError, match="non-integer"):
        _rebuild_tensor(storage, "0", (object(),), (1,))
