"""Reading the demo's input (one image, a folder of images, a video) and writing videos atomically.

Images are read with Pillow (EXIF orientation applied, grey and RGBA converted to RGB); videos with imageio's
ffmpeg plugin, whose ffmpeg binary ships inside the imageio-ffmpeg package.
"""
import logging
import os
import tempfile

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class InputError(ValueError):
    """The demo's --input is missing, empty or of a kind it cannot read."""


def describe_input(path):
    """("images", [paths]) for an image or a folder of images (sorted, recursively), ("video", path)."""
    if not os.path.exists(path):
        raise InputError(f"{path} does not exist: --input takes an image, a folder of images or a video")
    if os.path.isdir(path):
        found = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                       if name.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise InputError(f"{path} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)}); for a video "
                             "pass the video file itself")
        return "images", found
    extension = os.path.splitext(path)[1].lower()
    if extension in IMAGE_EXTENSIONS:
        return "images", [path]
    if extension in VIDEO_EXTENSIONS:
        return "video", path
    raise InputError(f"{path}: unknown kind of file {extension!r}; images: {', '.join(IMAGE_EXTENSIONS)}; "
                     f"videos: {', '.join(VIDEO_EXTENSIONS)}")


def read_image(path):
    """[H, W, 3] uint8 RGB. Raises OSError (or ValueError) naming the file when it cannot be decoded."""
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"), np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise OSError(f"{path}: cannot read the image ({e})") from e


def video_frames(path, max_bad_frames=10):
    """(fps, frames): frames yields (index, image [H, W, 3] uint8) in order. A frame ffmpeg cannot decode is
    logged by its index and skipped; after max_bad_frames in a row the stream is taken to be broken and ends."""
    import imageio.v2 as imageio
    try:
        reader = imageio.get_reader(path, format="FFMPEG")
        fps = float(reader.get_meta_data().get("fps") or 25.0)
    except Exception as e:  # imageio raises plain Exceptions from the ffmpeg pipe
        raise InputError(f"{path}: cannot open the video ({str(e).splitlines()[0] if str(e) else e!r})") from e

    def frames():
        index, bad_run = 0, 0
        try:
            while bad_run < max_bad_frames:
                try:
                    frame = reader.get_next_data()
                except (IndexError, StopIteration):
                    return
                except Exception as e:  # noqa: BLE001 (a corrupt frame: named, skipped, the rest goes on)
                    logging.warning("%s: frame %d cannot be decoded (%s); skipped", path, index,
                                    str(e).splitlines()[0] if str(e) else type(e).__name__)
                    index, bad_run = index + 1, bad_run + 1
                    continue
                yield index, np.asarray(frame, np.uint8)[..., :3]
                index, bad_run = index + 1, 0
            logging.warning("%s: %d frames in a row cannot be decoded; stopping at frame %d", path, bad_run, index)
        finally:
            reader.close()
    return fps, frames()


class VideoWriter:
    """An .mp4 written to a temporary file beside `path` and renamed on close(); abort() removes it."""

    def __init__(self, path, fps):
        self.path, self.fps, self._writer = path, fps, None
        fd, self._tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=".mp4")
        os.close(fd)

    def append(self, frame):
        import imageio.v2 as imageio
        if self._writer is None:  # yuv420p needs even sides: pad by a pixel rather than resample
            self._writer = imageio.get_writer(self._tmp, format="FFMPEG", fps=self.fps, codec="libx264",
                                              quality=7, macro_block_size=2, ffmpeg_log_level="error")
        height, width = frame.shape[:2]
        frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)))
        self._writer.append_data(frame)

    def close(self):
        if self._writer is None:
            self.abort()
            return None
        self._writer.close()
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self):
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 (the file is being discarded)
                pass
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)
