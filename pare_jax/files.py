"""Writing output files so that an interrupted run never leaves a half-written one."""
import io
import os
import tempfile


def write_atomic(path, data):
    """Write bytes to a temporary file beside `path`, then rename it over `path` (atomic on POSIX)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_png(path, pixels):
    """pixels [H, W, 3] (or [H, W]) uint8 -> PNG file, atomically."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())


def write_obj(path, vertices, faces):
    """Wavefront OBJ of one mesh: vertices [V, 3], faces [F, 3] (0-based), atomically."""
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    write_atomic(path, ("\n".join(lines) + "\n").encode())
