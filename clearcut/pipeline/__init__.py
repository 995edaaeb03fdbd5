"""The cutout pipeline: one pure function of (image bytes, options) -> (result bytes, metadata).

Steps: decode -> segment (model proxy; only the ``roi`` region when one is set) -> confidence (estimated
IoU of the cutout) -> refine (full-resolution matte + foreground colours; ``semitransparency=false``
hardens it) -> compose (size, crop, despill, background, channels) -> encode. Each step lives in its own module;
this one only orders them and records timings.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from clearcut import config
from clearcut.models.registry import spec
from clearcut.models.store import ModelStore
from clearcut.options import Options
from clearcut.pipeline import compose, confidence, layout, refine, region, segment
from clearcut.pipeline.decode import decode
from clearcut.pipeline.encode import CONTENT_TYPES, encode

# Part of every stored result's key (clearcut.jobs.result_key): bump it whenever a change alters output
# pixels for the same image, options and model files (fusion rule, refinement, encoder settings), so a
# deploy never serves a cutout made by the previous algorithm from the result cache.
# 2: U2-Net has no say on ISNet's thin structures (benchmarks/QUALITY.md, section 9).
# 3: secondaries run only on photos the primary sees whole and only when they see the same subject; the
#    networks' outputs keep every row and column (segment.make_guide); guided filter eps 1e-4 (section 12).
# 4: foreground colours from step 1's background mean at radius 3, coarse means on an exact 1/4 grid;
#    flattening blends only soft pixels (at most a level of difference).
# 5: guided upsampling's offset keeps the network's matte at each grid pixel (refine.guided_upsample);
#    on photos larger than ISNet's input, `quality` averages ISNet on the photo and on its mirror image.
# 6: the ``soft`` preset's colour-based edges never move a pixel across 0.5 (refine.soft_edges).
# 7: the networks' logits on their own grid are enlarged to the grid before the sigmoid (segment.to_grid).
REVISION = 7


@dataclass
class Result:
    data: bytes
    content_type: str
    metadata: dict = field(default_factory=dict)


class _Timer:
    def __init__(self):
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        yield
        self.timings[stage] = round((time.perf_counter() - start) * 1000, 2)


def full_matte(matte: np.ndarray, guide: np.ndarray, rgb: np.ndarray, model: str | None) -> np.ndarray:
    """The matte at ``rgb``'s size: guided upsampling, the ``soft`` preset's colour-based edges, and
    cleaning of near-0/near-1 values."""
    alpha = refine.guided_upsample(matte, guide, rgb)
    if (model or config.get("CLEARCUT_DEFAULT_MODEL")) in segment.SOFT_EDGES:
        alpha = refine.soft_edges(rgb, alpha, max(rgb.shape[:2]) / max(guide.shape[:2]))
    return refine.clean_alpha(alpha, in_place=alpha is not matte)  # a new array unless rgb is the grid


def process(data: bytes, options: Options | None = None, *, store: ModelStore | None = None) -> Result:
    options = options or Options()
    timer = _Timer()
    with timer("decode"):
        image = decode(data, max_megapixels=config.get("CLEARCUT_MAX_MEGAPIXELS"))
    models, score, box = [], None, None  # remove_background=false: no model runs, the whole frame is the subject
    if options.remove_background:
        box = region.resolve(options.roi, image.width, image.height)  # None: the whole photo
        source = image.rgb if box is None else region.crop(image.rgb, box)  # what the networks see
        models = segment.models_for(segment.resolve_models(options.model), source.shape[1], source.shape[0], store)
        with timer("infer"):
            matte_lo, proxy = segment.predict(source, models, store, picture=image.picture if box is None else None)
        with timer("confidence"):
            score = confidence.confidence(matte_lo)
    image.picture = None  # Pillow's copy of the photo (4 bytes a pixel) is not needed any more
    with timer("refine"):
        # Without crop the output size is known now: work at that size (cheaper than full then shrink).
        work_size = ((image.width, image.height) if options.crop
                     else compose.target_size(image.width, image.height, options.size))
        rgb = compose.resize_rgb(image.rgb, work_size)
        if not options.remove_background:
            alpha = np.ones(rgb.shape[:2], np.float32)
        elif box is None:
            alpha = full_matte(matte_lo, proxy, rgb, options.model)
        else:  # the region's matte at work size, in a frame that is transparent outside it
            inner = region.rescale(box, (image.width, image.height), work_size)
            alpha = region.paste(full_matte(matte_lo, proxy, region.crop(rgb, inner), options.model), inner,
                                 rgb.shape[:2])
        if image.alpha is not None:  # already-transparent input: never make hidden pixels visible
            alpha = np.minimum(alpha, compose.resize_rgb(image.alpha, work_size).astype(np.float32) / 255.0)
        if not options.semitransparency:
            alpha = compose.harden(alpha)
        soft = refine.soft_pixels(alpha) if options.channels == "rgba" else None
        fg = refine.estimate_foreground(rgb, alpha, soft) if soft is not None and soft.size else rgb
    with timer("compose"):
        scale = rgb.shape[1] / image.width
        bbox_work = compose.bounding_box(alpha >= compose.SUBJECT_ALPHA)
        cut = layout.cut_sides(bbox_work, *work_size)  # where the photo's frame cut the subject (before any crop)
        if options.crop and bbox_work is not None:
            left, top, right, bottom = layout.crop_box(compose.crop_box(bbox_work, options.crop_margin, *work_size),
                                                       alpha, bbox_work, options)
            fg, alpha = fg[top:bottom, left:right], alpha[top:bottom, left:right]
            out_size = compose.target_size(right - left, bottom - top, options.size)
            if out_size != (right - left, bottom - top):
                scale *= out_size[0] / (right - left)
                fg = compose.resize_rgb(fg, out_size)
                alpha = compose.resize_rgb(alpha, out_size)
                if not options.semitransparency:
                    alpha = compose.harden(alpha)
    with timer("layout"):  # canvas, margin, padding, fit, position, shadow (0 ms without them)
        fg, alpha, bbox_out = layout.apply(fg, alpha, options, cut)
    with timer("finish"):
        pixels = compose.finish(fg, alpha, options)
    with timer("encode"):
        payload = encode(pixels, options.format, dpi=options.dpi)
    bbox_in = None
    if bbox_work is not None:
        s = image.width / rgb.shape[1]
        left, top, w, h = bbox_work
        bbox_in = [round(left * s), round(top * s), round(w * s), round(h * s)]
    metadata = {
        "width": int(pixels.shape[1]), "height": int(pixels.shape[0]),
        "input_width": image.width, "input_height": image.height, "input_format": image.source_format,
        "foreground_input": _box_dict(bbox_in), "foreground_output": _box_dict(bbox_out),
        "models": [{"name": m, "version": spec(m).version} for m in dict.fromkeys(models)],  # a mirror run once
        "model": options.model or config.get("CLEARCUT_DEFAULT_MODEL"),
        "format": options.format, "channels": options.channels, "confidence": score,
        "timings_ms": timer.timings,
    }
    return Result(payload, CONTENT_TYPES[options.format], metadata)


def _box_dict(box) -> dict | None:
    if box is None:
        return None
    left, top, width, height = box
    return {"left": left, "top": top, "width": width, "height": height}
