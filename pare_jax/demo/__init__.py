"""The demo: 3D bodies for the people in your photos and videos.

    python -m pare_jax.demo --input PATH --out DIR --weights W [--boxes FILE] [--batch-size N] [--smooth]

PATH: an image, a folder of images or a video. W: a training workdir (python run.py ...) or converted authors'
weights (python -m pare_jax.convert). People come from --boxes, else from OpenCV's people detector, else the
whole image is one person. Per image: DIR/<name>_overlay.png (meshes over the image), _side.png (seen from the
side), _attention.png (PARE's part attention over each crop), <name>.npz (pred_pose, pred_shape, pred_cam, the
image-camera translation, vertices, 3D joints, 2D joints in image pixels, boxes, per person), _person<i>.obj and
<name>.glb. Per video: <name>_overlay.mp4 (overlay and side view) and <name>_tracks.npz (per IoU track).
Modules: geometry (crops, cameras), people (boxes, detector), media (reading, video writing), tracking (IoU
tracks, One-Euro smoothing), outputs (pictures, files), app (the driver).
"""
