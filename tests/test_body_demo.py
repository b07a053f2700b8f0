"""The README's main job: pose the bundled body and write a mesh and pictures."""
import numpy as np
import pytest
from PIL import Image

import smpl_jax
from pare_jax import body_demo


def test_demo_writes_mesh_and_pictures_of_the_open_body(tmp_path):
    paths = body_demo.run(str(tmp_path), model="open", pose="sit", size=64)
    body = smpl_jax.load("open")
    lines = open(paths[0]).read().splitlines()
    assert sum(line.startswith("v ") for line in lines) == body.num_vertices
    assert sum(line.startswith("f ") for line in lines) == body.faces.shape[0]
    shaded = np.asarray(Image.open(paths[1]))
    parts = np.asarray(Image.open(paths[2]))
    assert shaded.shape == parts.shape == (64, 64, 3)
    person = parts.any(axis=-1)
    assert 0.1 < person.mean() < 0.7  # the body fills a good part of the frame, not all of it
    rows, cols = np.nonzero(person)
    assert rows.min() > 0 and rows.max() < 63  # framed: nothing cut off at the top or bottom
    assert abs(cols.mean() - 32) < 6
    assert len({tuple(c) for c in parts[person]}) > 10  # many parts visible, each with its own colour
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_demo_reports_a_missing_model_and_exits_nonzero(tmp_path, capsys):
    assert body_demo.main(["--out", str(tmp_path), "--model", str(tmp_path / "missing.pkl")]) == 2
    assert "missing.pkl: no such file" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


def test_unknown_pose_is_refused():
    with pytest.raises(ValueError, match="unknown pose 'dance'"):
        body_demo.pose_vector("dance")
