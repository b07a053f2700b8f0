"""People across video frames: greedy IoU tracking of boxes, and the One-Euro filter for temporal smoothing.

Tracking: each frame's boxes are matched to the tracks seen in the last MAX_GAP frames, best IoU first, when
the IoU is at least MIN_IOU; an unmatched box starts a new track.

One-Euro filter (Casiez, Roussel and Vogel, CHI 2012): an exponential smoothing whose cut-off frequency rises
with the signal's speed, so slow motion is smoothed strongly (jitter goes) and fast motion lags little:
    dx_hat = lowpass(dx, alpha(d_cutoff)),  cutoff = min_cutoff + beta * |dx_hat|,  x_hat = lowpass(x, alpha(cutoff))
    alpha(fc) = 1 / (1 + tau / dt),  tau = 1 / (2 pi fc)
Rotations are smoothed as matrices and projected back onto SO(3) (the nearest rotation, by SVD).
"""
import numpy as np

from pare_jax.demo.people import iou

MIN_IOU = 0.3
MAX_GAP = 5


class IoUTracker:
    def __init__(self, min_iou=MIN_IOU, max_gap=MAX_GAP):
        self.min_iou, self.max_gap = min_iou, max_gap
        self._last = {}  # track id -> (frame index, box)
        self._next_id = 0

    def update(self, frame, boxes):
        """Track ids [P] for this frame's boxes [P, 4]."""
        live = [(tid, box) for tid, (seen, box) in self._last.items() if frame - seen <= self.max_gap]
        ids = np.full(len(boxes), -1, int)
        if live and len(boxes):
            overlap = iou(boxes, np.asarray([box for _, box in live]))
            for flat in np.argsort(-overlap, axis=None):
                i, j = np.unravel_index(flat, overlap.shape)
                if overlap[i, j] < self.min_iou:
                    break
                if ids[i] < 0 and live[j][0] not in ids:
                    ids[i] = live[j][0]
        for i in range(len(boxes)):
            if ids[i] < 0:
                ids[i], self._next_id = self._next_id, self._next_id + 1
            self._last[int(ids[i])] = (frame, np.asarray(boxes[i], np.float64))
        return ids


def _alpha(cutoff, dt):
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Causal One-Euro filter of a fixed-shape signal sampled at fps: call it with each new sample."""

    def __init__(self, fps, min_cutoff=1.0, beta=0.05, d_cutoff=1.0):
        self.dt, self.min_cutoff, self.beta, self.d_cutoff = 1.0 / fps, min_cutoff, beta, d_cutoff
        self._previous, self._dx_hat = None, None

    def __call__(self, x):
        x = np.asarray(x, np.float64)
        if self._previous is None:
            self._previous, self._dx_hat = x, np.zeros_like(x)
            return x
        dx = (x - self._previous) / self.dt
        self._dx_hat = self._dx_hat + _alpha(self.d_cutoff, self.dt) * (dx - self._dx_hat)
        a = _alpha(self.min_cutoff + self.beta * np.abs(self._dx_hat), self.dt)
        self._previous = self._previous + a * (x - self._previous)
        return self._previous


def one_euro(signal, fps, min_cutoff=1.0, beta=0.05, d_cutoff=1.0):
    """Filter a whole signal [T, ...] (causally) -> [T, ...]."""
    step = OneEuroFilter(fps, min_cutoff, beta, d_cutoff)
    return np.stack([step(x) for x in np.asarray(signal, np.float64)])


def nearest_rotation(matrices):
    """[..., 3, 3] -> the nearest rotation matrices (det +1)."""
    u, _, vt = np.linalg.svd(matrices)
    fix = np.ones(matrices.shape[:-1])
    fix[..., -1] = np.sign(np.linalg.det(u @ vt))
    return (u * fix[..., None, :]) @ vt


class BodySmoother:
    """Online smoothing of one track's pose [24, 3, 3], shape [10] and translation [3]."""

    def __init__(self, fps, min_cutoff=1.0, beta=0.05):
        self._pose = OneEuroFilter(fps, min_cutoff, beta)
        self._shape = OneEuroFilter(fps, min_cutoff / 4, 0.0)  # a person's shape does not change: only jitter
        self._translation = OneEuroFilter(fps, min_cutoff, beta)

    def __call__(self, pose, shape, translation):
        return (np.float32(nearest_rotation(self._pose(pose))), np.float32(self._shape(shape)),
                np.float32(self._translation(translation)))
