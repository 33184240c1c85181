"""Write one GIF frame per step with celluloid and matplotlib's Pillow writer (no ffmpeg needed)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib.pyplot as plt
from celluloid import Camera
from matplotlib.animation import PillowWriter
from matplotlib.figure import Figure

__all__ = ["write_gif"]


def write_gif(
    fig: Figure,
    draw_frame: Callable[[object], None],
    frames: Iterable,
    path: str | Path,
    fps: float = 2.0,
) -> Path:
    """Call `draw_frame(frame)` for each frame on `fig`'s axes, snap it, save a GIF, close `fig`.

    `draw_frame` draws onto the existing axes without clearing them (celluloid records the artists
    added since the previous snap).

    Args:
        fig: the figure whose axes `draw_frame` draws on; closed once the frames are drawn
            (also when `frames` is empty, not when `fps` is rejected).
        draw_frame: called once per frame with that frame; its return value is ignored.
        frames: the frames, consumed once (a generator is fine).
        path: where to write the GIF; missing parent folders are created.
        fps: frames per second of the GIF (> 0).

    Returns:
        `path` as a `Path`.

    Raises:
        ValueError: `fps` <= 0, or `frames` yields nothing (no file is written then).
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    camera = Camera(fig)
    count = 0
    for frame in frames:
        draw_frame(frame)
        camera.snap()
        count += 1
    if count == 0:
        plt.close(fig)
        raise ValueError("frames must not be empty")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    camera.animate(interval=1000.0 / fps).save(str(path), writer=PillowWriter(fps=fps))
    plt.close(fig)
    return path
