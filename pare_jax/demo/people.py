"""Where the people are: boxes from a file, from OpenCV's built-in people detector, or the whole image.

--boxes FILE is a JSON object {key: boxes}: the key is an image's file name (or its path relative to the input
folder) or, for a video, the frame index as a string ("0", "1", ...); boxes are [[x0, y0, x1, y1], ...] in
pixels, or OpenPose output for that image ({"people": [{"pose_keypoints_2d": [x, y, c, ...]}, ...]}), whose
box is the extent of the keypoints with confidence above 0.1. --boxes DIR reads OpenPose's own output folder
(`<image stem>_keypoints.json`, or `<video stem>_<12-digit frame>_keypoints.json` for a video). An image without
an entry gets no person.

Without --boxes: OpenCV's HOG people detector (its weights are compiled into the opencv package; nothing is
downloaded) finds upright, mostly unoccluded people of at least ~100 px; an image where it finds none is taken
as one person filling the image, and the log says so.
"""
import json
import logging
import os

import numpy as np

from pare_jax.demo.geometry import BoxError

OPENPOSE_MIN_CONFIDENCE = 0.1
DETECTOR_MAX_SIDE = 960  # HOG runs on a copy at most this large: detection quality barely changes, time does
DETECTOR_MIN_SCORE = 0.5


def keypoint_box(keypoints):
    """OpenPose keypoints [x0, y0, c0, x1, ...] -> [x0, y0, x1, y1] of the confident ones, or None."""
    points = np.asarray(keypoints, np.float64).reshape(-1, 3)
    points = points[points[:, 2] > OPENPOSE_MIN_CONFIDENCE]
    if len(points) < 2:
        return None
    return np.concatenate([points[:, :2].min(0), points[:, :2].max(0)])


def _boxes_of_entry(entry, where):
    if isinstance(entry, dict) and "people" in entry:
        boxes = [keypoint_box(person.get("pose_keypoints_2d", [])) for person in entry["people"]]
        return np.asarray([b for b in boxes if b is not None], np.float64).reshape(-1, 4)
    boxes = np.asarray(entry, np.float64) if isinstance(entry, list) else None
    if boxes is None or (boxes.size and boxes.ndim != 2) or (boxes.size and boxes.shape[1] != 4):
        raise BoxError(f"{where}: expected a list of [x0, y0, x1, y1] boxes or OpenPose output, got "
                       f"{json.dumps(entry)[:80]}")
    return boxes.reshape(-1, 4)


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BoxError(f"{path}: cannot read boxes ({e}); --boxes takes a JSON file or an OpenPose output folder")


class BoxSource:
    """boxes_for(key, image) -> [P, 4] float64 and a word on where they came from."""

    def __init__(self, path=None, detector="hog"):
        self.path, self.detector = path, detector
        self._table = None
        if path and not os.path.isdir(path):
            table = _read_json(path)
            if not isinstance(table, dict):
                raise BoxError(f"{path}: expected a JSON object {{image name or frame index: boxes}}")
            self._table = table
        elif path is None and detector == "hog":
            self._hog = _hog_detector()

    def boxes_for(self, key, image, openpose_stem=None):
        if self.path and self._table is not None:
            for name in (key, os.path.basename(key)):
                if name in self._table:
                    return _boxes_of_entry(self._table[name], f"{self.path}[{name!r}]"), "boxes file"
            return np.zeros((0, 4)), "boxes file (no entry)"
        if self.path:  # an OpenPose output folder
            path = os.path.join(self.path, f"{openpose_stem or os.path.splitext(os.path.basename(key))[0]}"
                                           "_keypoints.json")
            if not os.path.isfile(path):
                return np.zeros((0, 4)), "OpenPose folder (no file)"
            return _boxes_of_entry(_read_json(path), path), "OpenPose"
        if self.detector == "hog":
            boxes = detect_people(self._hog, image)
            if len(boxes):
                return boxes, "HOG detector"
        height, width = image.shape[:2]
        return np.array([[0.0, 0.0, width, height]]), "whole image"


def _hog_detector():
    try:
        import cv2
    except ImportError as e:
        raise RuntimeError("the person detector needs OpenCV (pip install -r requirements.txt); or give the "
                           "people with --boxes, or --detector none for the whole image") from e
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


def detect_people(hog, image):
    """image [H, W, 3] uint8 -> boxes [P, 4] of the people HOG finds, overlapping detections merged."""
    import cv2
    scale = min(1.0, DETECTOR_MAX_SIDE / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    gray = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)
    rects, scores = hog.detectMultiScale(gray, winStride=(8, 8), padding=(16, 16), scale=1.05)
    if len(rects) == 0:
        return np.zeros((0, 4))
    boxes = np.asarray(rects, np.float64)
    boxes[:, 2:] += boxes[:, :2]
    keep = non_max_suppression(boxes, np.asarray(scores, np.float64).reshape(-1), DETECTOR_MIN_SCORE)
    logging.debug("HOG: %d raw detections, %d kept", len(boxes), len(keep))
    return boxes[keep] / scale


def iou(a, b):
    """IoU matrix [len(a), len(b)] of boxes [*, 4] (x0, y0, x1, y1)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def non_max_suppression(boxes, scores, min_score, max_iou=0.4):
    """Indices of the boxes kept, best first: score above min_score, IoU with every better kept box <= max_iou."""
    order = [i for i in np.argsort(-scores) if scores[i] >= min_score]
    kept = []
    for i in order:
        if not kept or iou(boxes[i:i + 1], boxes[kept]).max() <= max_iou:
            kept.append(i)
    return np.asarray(kept, int)
