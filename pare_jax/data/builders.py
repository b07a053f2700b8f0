"""tfds builders: the SPIN/PARE-format datasets (manual download) and the synthetic dataset (no download).

    import tensorflow_datasets as tfds
    from pare_jax.data import builders
    builder = builders.PareSpin(config="coco", data_dir="~/tensorflow_datasets")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir="/data/pare"))
    builder = builders.PareSynthetic(config="small", data_dir="~/tensorflow_datasets")
    builder.download_and_prepare()

Both write the example of pare_jax.data.schema (the person crop with a margin, keypoints, SMPL parameters and
flags, and the 24-part label map rendered offline from the ground-truth mesh). A custom dataset or layout:
PareSpin(config=SpinConfig(name="mine", npz_files={"train": "mine_train.npz"}, image_root="mine"), ...);
read a prepared one back from its folder with tfds.builder_from_directory (pare_jax.data.pipeline does).
The body used for the part maps: body="open" (default), a path to an SMPL file, or an smpl_jax.SMPL; real SMPL
needs the SPIN extra regressor for the 49 joints (extra_regressor="J_regressor_extra.npy").
"""
import concurrent.futures
import dataclasses
import logging
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from pare_jax.data import schema, spin_format

log = logging.getLogger(__name__)

_SPIN_INSTRUCTIONS = """
Put the SPIN/PARE preprocessed annotation files (.npz, one per split; see pare_jax/data/spin_format.py) directly
in the manual directory, and each dataset's images (or a symlink to them) in a folder named after the config
(imgname paths in the npz are relative to it):

  <manual_dir>/coco_2014_train_eft.npz      <manual_dir>/coco/train2014/COCO_train2014_....jpg
  <manual_dir>/h36m_train.npz               <manual_dir>/h36m/images/...
  <manual_dir>/3dpw_test.npz                <manual_dir>/3dpw/imageFiles/...

File names per config: see BUILDER_CONFIGS in pare_jax/data/builders.py, or pass your own
SpinConfig(name=..., npz_files={split: file}, image_root=...). The datasets cannot be downloaded automatically:
get them from their owners (COCO, MPII, LSPET with EFT fits, MPI-INF-3DHP, Human3.6M, 3DPW, 3DOH50K) and the
preprocessed npz files from the SPIN / PARE / EFT releases.
"""


@dataclasses.dataclass(eq=False)
class SpinConfig(tfds.core.BuilderConfig):
    """npz_files: split -> npz file name in the manual dir; image_root: image folder under the manual dir
    (default: the config name); crop_size: the training crop (the box side in stored pixels = crop_size);
    crop_margin: stored crop side / box side."""
    npz_files: dict = dataclasses.field(default_factory=dict)
    image_root: str = ""
    crop_size: int = schema.DEFAULT_CROP_SIZE
    crop_margin: float = schema.DEFAULT_CROP_MARGIN


def _spin(name, files, image_root=None, description=""):
    return SpinConfig(name=name, npz_files=files, image_root=image_root or name, description=description)


SPIN_CONFIGS = [
    _spin("coco", {"train": "coco_2014_train_eft.npz"}, description="COCO 2014 with EFT pseudo ground truth"),
    _spin("mpii", {"train": "mpii_train_eft.npz"}, description="MPII with EFT pseudo ground truth"),
    _spin("lspet", {"train": "hr-lspet_train_eft.npz"}, description="LSP extended with EFT pseudo ground truth"),
    _spin("mpi_inf_3dhp", {"train": "mpi_inf_3dhp_train.npz", "test": "mpi_inf_3dhp_test.npz"}),
    _spin("h36m", {"train": "h36m_train.npz", "test": "h36m_valid_protocol2.npz"}),
    _spin("3dpw", {"train": "3dpw_train.npz", "validation": "3dpw_validation.npz", "test": "3dpw_test.npz"}),
    _spin("3dpw_occ", {"test": "3dpw_occ_test.npz"}, image_root="3dpw",
          description="3DPW-OCC: the occluded 3DPW sequences"),
    _spin("3doh", {"test": "3doh_test.npz"}, description="3DOH50K test split"),
]


class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Locates the builder's code itself: tfds 4.9.10's own lookup needs the `importlib_resources` backport,
    which it declares only for Python < 3.9, so it fails on a clean install."""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(os.path.abspath(__file__))


def _load_body(body, extra_regressor=None):
    if not isinstance(body, (str, os.PathLike)):
        return body
    import smpl_jax
    return smpl_jax.load(body, extra_regressor=extra_regressor)


class PareSpin(_LocalBuilder):
    """SPIN/PARE-format datasets, read from a manual directory, with offline part labels.

    masks: the silhouettes are the ground-truth mesh rendered like the part map (has_silhouette = has_part_map);
    the npz files say nothing about what covers a person, so the "visible" silhouette is the full one. Context
    maps (pare_jax.data.context) mark every person annotated in the same image (rows with the same imgname,
    e.g. COCO, MPII, 3DPW): the centre from their ground-truth torso joints (their box centre when none is
    annotated), sigma from their box; a dataset with one annotated person per image gets local = global.
    """

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": "Silhouettes and context maps (masks, has_silhouette, "
                     "has_context)."}
    BUILDER_CONFIGS = SPIN_CONFIGS
    MANUAL_DOWNLOAD_INSTRUCTIONS = _SPIN_INSTRUCTIONS

    def __init__(self, *, body="open", extra_regressor=None, render_chunk=16, workers=8, **kwargs):
        self._body_source, self._extra_regressor = body, extra_regressor
        self._render_chunk, self._workers = render_chunk, workers
        self.skipped_images = {}  # split -> [(imgname, reason)]
        super().__init__(**kwargs)

    def _info(self):
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=schema.features(schema.stored_size(config.crop_size, config.crop_margin)),
            description=f"{config.description or config.name} in the SPIN/PARE format, person crops with a "
                        f"margin of {config.crop_margin} and offline 24-part label maps.")

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        config = self.builder_config
        npz_paths = {split: os.path.join(root, name) for split, name in config.npz_files.items()}
        absent = [p for p in npz_paths.values() if not os.path.isfile(p)]
        if absent:
            raise FileNotFoundError(spin_format.describe_missing("annotation files", root, [
                os.path.relpath(p, root) for p in absent]) + f"\nExpected layout:{_SPIN_INSTRUCTIONS}")
        image_root = os.path.join(root, config.image_root)
        annotations = {split: spin_format.read_annotations(p) for split, p in npz_paths.items()}
        for split, ann in annotations.items():
            missing = spin_format.missing_files(image_root, ann["imgname"])
            if missing:
                raise FileNotFoundError(spin_format.describe_missing(
                    f"images of {os.path.basename(npz_paths[split])}", image_root, missing) +
                    f"\nPut the {config.name} images there (imgname paths are relative to {image_root}).")
        return {split: self._generate_examples(split, ann, image_root) for split, ann in annotations.items()}

    def _generate_examples(self, split, annotations, image_root):
        from pare_jax.data.offline_labels import PartLabeler
        config = self.builder_config
        size = schema.stored_size(config.crop_size, config.crop_margin)
        labeler = PartLabeler(_load_body(self._body_source, self._extra_regressor), size, config.crop_margin,
                              chunk=self._render_chunk)
        keypoints = spin_format.normalize_keypoints(spin_format.keypoints49(annotations), annotations["center"],
                                                    annotations["scale"])
        skipped = self.skipped_images.setdefault(split, [])
        people = _people_of_images(annotations)
        with concurrent.futures.ThreadPoolExecutor(self._workers) as pool:
            for start in range(0, len(keypoints), self._render_chunk):
                rows = np.arange(start, min(start + self._render_chunk, len(keypoints)))
                yield from self._chunk(rows, annotations, keypoints, image_root, size, labeler, pool, skipped,
                                       people)
        if skipped:
            names = "\n  ".join(f"{name}: {reason}" for name, reason in skipped)
            log.warning("%s/%s: skipped %d unreadable image(s) out of %d:\n  %s", config.name, split,
                        len(skipped), len(keypoints), names)

    def _chunk(self, rows, ann, keypoints, image_root, size, labeler, pool, skipped, people):
        margin = self.builder_config.crop_margin

        def crop(row):
            try:
                image = spin_format.load_image(os.path.join(image_root, ann["imgname"][row]))
            except OSError as exc:
                return None, str(exc)
            return spin_format.crop_image(image, ann["center"][row], ann["scale"][row], size, margin), None

        crops = list(pool.map(crop, rows))
        maps, cam_t, has_map = labeler(ann["pose"][rows], ann["shape"][rows], keypoints[rows], ann["has_smpl"][rows])
        for i, row in enumerate(rows):
            image, error = crops[i]
            if image is None:
                skipped.append((str(ann["imgname"][row]), error))
                continue
            silhouette = (maps[i] > 0).reshape(size, size) * np.uint8(255)
            context_maps = _spin_context(row, people, ann, size, margin)
            masks = np.stack([silhouette, silhouette, *np.round(context_maps * 255).astype(np.uint8).transpose(2, 0, 1)],
                             axis=-1)
            yield int(row), {
                "masks": schema.encode_png(masks), "has_silhouette": np.float32(has_map[i]),
                "has_context": np.float32(1),
                "image": schema.encode_jpeg(image), "part_map": schema.encode_png(maps[i]),
                "has_part_map": has_map[i], "keypoints": keypoints[row],
                "visibility": np.full(schema.NUM_KEYPOINTS, -1.0, np.float32), "joints3d": ann["S"][row],
                "has_joints3d": ann["has_joints3d"][row], "pose": ann["pose"][row], "betas": ann["shape"][row],
                "has_smpl": ann["has_smpl"][row], "cam_t": cam_t[i], "crop_margin": np.float32(margin),
                "box": np.append(ann["center"][row], ann["scale"][row]).astype(np.float32),
                "gender": ann["gender"][row], "imgname": str(ann["imgname"][row]), "sample_index": int(row)}


def _people_of_images(ann):
    """(rows of each image: {imgname: [rows]}, body centres [N, 2] and box sides [N] in original pixels)."""
    from pare_jax.data import context
    groups = {}
    for row, name in enumerate(ann["imgname"]):
        groups.setdefault(str(name), []).append(row)
    centres = np.stack([context.body_centre(ann["part"][row], box_centre=ann["center"][row])
                        for row in range(len(ann["imgname"]))]) if len(ann["imgname"]) else np.zeros((0, 2))
    return groups, centres, 200.0 * np.asarray(ann["scale"], np.float64)


def _spin_context(row, people, ann, size, crop_margin):
    """[S, S, 2] context maps of row's stored crop: every person of its image, the row itself as the target."""
    from pare_jax.data import context, spin_format
    groups, centres, sides = people
    rows = groups[str(ann["imgname"][row])]
    x0, y0, crop_side = spin_format.crop_box(ann["center"][row], ann["scale"][row], crop_margin)
    zoom = size / crop_side
    crop_centres = (centres[rows] - np.asarray([x0, y0])) * zoom
    return context.context_maps(crop_centres, context.sigma_for_box(sides[rows] * zoom), rows.index(row), size, size)


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    """crop_size: the box side in stored pixels; num_examples: split -> count; seed: everything follows from it;
    max_heading_deg: people turn at most this far from facing the camera (180: any heading); tilt_deg: standard
    deviation of their lean (view augmentation: widen it); multi_person_ratio: the fraction of training scenes
    with other people around the target (pare_jax.data.synthetic)."""
    crop_size: int = schema.DEFAULT_CROP_SIZE
    crop_margin: float = schema.DEFAULT_CROP_MARGIN
    num_examples: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    max_heading_deg: float = 180.0
    tilt_deg: float = 10.0
    multi_person_ratio: float = 0.0


SYNTHETIC_CONFIGS = [
    SyntheticConfig(name="default", num_examples={"train": 20000, "test": 1000, "test_occluded": 1000,
                                                  "test_person_occluded": 1000}, multi_person_ratio=0.5),
    SyntheticConfig(name="small", num_examples={"train": 2000, "test": 200, "test_occluded": 200,
                                                "test_person_occluded": 200}, multi_person_ratio=0.5),
    SyntheticConfig(name="tiny", crop_size=64, num_examples={"train": 32, "test": 8, "test_occluded": 8,
                                                             "test_person_occluded": 8}, multi_person_ratio=0.5),
]


class PareSynthetic(_LocalBuilder):
    """Rendered people with exact labels (pare_jax.data.synthetic); needs no download."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": "Multi-person scenes, test_person_occluded, silhouettes "
                     "and context maps (masks, has_silhouette, has_context)."}
    BUILDER_CONFIGS = SYNTHETIC_CONFIGS

    def __init__(self, *, body="open", render_chunk=16, **kwargs):
        self._body_source, self._render_chunk = body, render_chunk
        self._scenes = None
        super().__init__(**kwargs)

    def _scene_renderer(self):
        if self._scenes is None:
            from pare_jax.data import occluders, synthetic
            bank = occluders.make_occluder_bank(num=128, size=64, seed=self.builder_config.seed + 1)
            config = self.builder_config
            self._scenes = synthetic.SceneRenderer(_load_body(self._body_source), bank, self._render_chunk,
                                                   config.max_heading_deg, config.multi_person_ratio,
                                                   config.tilt_deg)
        return self._scenes

    def _info(self):
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=schema.features(schema.stored_size(config.crop_size, config.crop_margin)),
            description="Synthetic people rendered from the open SMPL-format body with exact labels: "
                        "train, test, test_occluded (occluders over body parts) and test_person_occluded (other "
                        "people in front of the target).")

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        from pare_jax.data import synthetic
        unknown = set(self.builder_config.num_examples) - set(synthetic.SPLITS)
        if unknown:
            raise ValueError(f"unknown synthetic splits {sorted(unknown)}; choose from {synthetic.SPLITS}")
        return {split: self._generate_examples(split, num)
                for split, num in self.builder_config.num_examples.items()}

    def _generate_examples(self, split, num):
        config = self.builder_config
        size = schema.stored_size(config.crop_size, config.crop_margin)
        scenes = self._scene_renderer()
        for start in range(0, num, self._render_chunk):
            indices = list(range(start, min(start + self._render_chunk, num)))
            for example in scenes.crops(split, indices, config.seed, size, config.crop_margin):
                index = int(example["sample_index"])
                example.update(image=schema.encode_jpeg(example["image"]),
                               part_map=schema.encode_png(example["part_map"]),
                               masks=schema.encode_png(example["masks"]),
                               imgname=f"synthetic/{split}/{index:07d}")
                yield index, example
