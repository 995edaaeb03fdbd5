"""The ``roi`` option: segment only a rectangle of the photo and leave everything outside it transparent.

The networks run on the region's crop rather than on the whole photo, so a small region gets the
networks' full input resolution (a region a quarter of the photo's width is sampled four times as
finely); the matte is then pasted back into a frame of zeros, so alpha is exactly 0 outside it.
Boxes are (left, top, right, bottom) in pixels, right and bottom exclusive.
"""
from __future__ import annotations

import numpy as np

from clearcut.errors import InvalidOption
from clearcut.options import roi_corners
from clearcut.pipeline.decode import oriented_size

Box = tuple[int, int, int, int]


def resolve(roi: str | None, width: int, height: int) -> Box | None:
    """The canonical ``roi`` (``clearcut.options.parse_roi``) on a width x height image, clipped to it;
    None when it covers the whole image. A region that keeps no pixel is ``invalid_roi``."""
    if roi is None:
        return None
    coords = roi_corners(roi)
    sides = (width, height, width, height)
    left, top, right, bottom = (min(side, max(0, round(n * side / 100 if unit == "%" else n)))
                                for (n, unit), side in zip(coords, sides))
    if right - left < 1 or bottom - top < 1:
        raise InvalidOption(f"roi {roi!r} keeps no pixel of the {width}x{height} image: x2 must be right of x1 and y2 "
                            f"below y1, inside the image (px are the input image's pixels)", code="invalid_roi",
                            option="roi", width=width, height=height)
    if (left, top, right, bottom) == (0, 0, width, height):
        return None
    return left, top, right, bottom


def check(roi: str | None, data: bytes) -> None:
    """Refuse, from the image's header alone, a region that keeps no pixel of it (before a job exists)."""
    if roi is not None:
        resolve(roi, *oriented_size(data))


def rescale(box: Box, source: tuple[int, int], target: tuple[int, int]) -> Box:
    """``box`` on a (width, height) ``source`` image, in the pixels of the same image resized to ``target``
    (at least 1 px each way)."""
    sx, sy = target[0] / source[0], target[1] / source[1]
    left, top = min(target[0] - 1, round(box[0] * sx)), min(target[1] - 1, round(box[1] * sy))
    return left, top, max(left + 1, round(box[2] * sx)), max(top + 1, round(box[3] * sy))


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    left, top, right, bottom = box
    return np.ascontiguousarray(image[top:bottom, left:right])


def paste(matte: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """The region's matte in a frame of ``shape`` (height, width) that is 0 everywhere else."""
    left, top, right, bottom = box
    frame = np.zeros(shape, np.float32)
    frame[top:bottom, left:right] = matte
    return frame
