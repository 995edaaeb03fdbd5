"""``clearcut remove``: cutouts for files, folders (recursively, keeping the tree) and stdin.

Output naming: with one input file and ``-o`` ending in an image extension, that file; with ``-o`` a
folder, the inputs' relative paths inside it; without ``-o``, ``NAME.cutout.EXT`` beside each input
(an input is never overwritten); stdin (``-``) goes to stdout unless ``-o`` names a file. A failed file
is reported and skipped; the exit code is 1 when anything failed.

The end-of-run summary lists the cutouts flagged for review (confidence below ``--review-below``, by
default CLEARCUT_REVIEW_BELOW), lowest confidence first; ``--review-list FILE`` also writes their input
paths there, one per line (an empty file when none is flagged).
"""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from clearcut import config
from clearcut.errors import ClearcutError
from clearcut.options import FORMATS, LAYOUT_FIELDS, MATTE_FIELDS, PLACEMENT_FIELDS, Options, parse

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}


@dataclass
class Job:
    source: Path | None  # None: stdin
    target: Path | None  # None: stdout


def register(sub) -> None:
    p = sub.add_parser("remove", help="remove backgrounds from files, folders or stdin")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, or - for stdin")
    p.add_argument("-o", "--output", help="output file (one input) or folder")
    add_image_options(p)
    p.add_argument("--review-list", metavar="FILE", help="write the flagged inputs' paths to FILE, one per line")
    p.add_argument("--workers", type=int, default=1, help="images processed in parallel")
    p.set_defaults(func=run)


def add_image_options(p) -> None:
    """The cutout options (shared with ``clearcut import``)."""
    p.add_argument("--format", default="png", help="png, jpg, webp, bmp, tiff, gif (default png)")
    p.add_argument("--channels", default="rgba", help="rgba or alpha")
    p.add_argument("--size", default="full", help="preview, medium, hd, full, auto")
    p.add_argument("--bg-color", help="flatten onto this colour (CSS name or hex)")
    p.add_argument("--crop", action="store_true", help="crop to the subject")
    p.add_argument("--crop-margin", help="margin around the crop: 30px, 10%%, '10px 20px'")
    p.add_argument("--despill", action="store_true", help="reduce green-screen spill")
    p.add_argument("--model", help="quality, fast, soft, or a model name (default: CLEARCUT_DEFAULT_MODEL)")
    p.add_argument("--roi", help="segment only this region: 'x1 y1 x2 y2' in px or %%, such as '10%% 0%% 90%% 100%%'")
    p.add_argument("--hard-edges", dest="semitransparency", action="store_const", const="false",
                   help="a hard matte, fully opaque or fully transparent (semitransparency=false)")
    p.add_argument("--review-below", help="flag cutouts whose confidence is below this (0-1; default: "
                                           "CLEARCUT_REVIEW_BELOW)")
    layout = p.add_argument_group("layout (docs/layout.md)")
    layout.add_argument("--layout", help="marketplace preset: amazon, shopify, ebay, etsy, google-merchant "
                                         "(the flags below override it)")
    layout.add_argument("--canvas", help="original, square or WxH such as 2000x2000")
    layout.add_argument("--padding", help="space inside the canvas edge: 40px, 5%%, '5%% 10%%'")
    layout.add_argument("--position", help="center, original, or 'X%% Y%%'")
    layout.add_argument("--scale", help="the subject's longer side as a %% of the padded canvas (1-100)")
    layout.add_argument("--shadow", help="none, drop, contact or floating")
    layout.add_argument("--shadow-opacity", help="0-100 (default: the shadow type's own)")
    layout.add_argument("--shadow-softness", help="0-100 (default 50)")
    layout.add_argument("--dpi", help="resolution written into the file's metadata, such as 300")
    layout.add_argument("--margin", help="a band kept clear at the canvas edge, outside the padding: 40px, 5%%")
    layout.add_argument("--fit", help="contain (the box fits inside the padded area) or cover (it covers it)")
    layout.add_argument("--reference", help="subject (its box is placed; default) or image (the whole frame is)")
    layout.add_argument("--snap-edges", help="none, all, horizontal or vertical: hold a subject the photo cut "
                                             "off against that side")
    layout.add_argument("--max-width", help="shrink the canvas (aspect kept) to at most this many px wide")
    layout.add_argument("--max-height", help="shrink the canvas (aspect kept) to at most this many px high")
    layout.add_argument("--keep-background", dest="remove_background", action="store_const", const="false",
                        help="no segmentation: lay out the whole photo (remove_background=false)")


def option_fields(args) -> dict:
    """The cutout options of ``add_image_options`` as /v2 fields (None: not given)."""
    return {"format": args.format, "channels": args.channels, "size": args.size,
            "bg_color": args.bg_color, "crop": args.crop, "crop_margin": args.crop_margin,
            "despill": args.despill, "model": args.model, "review_below": args.review_below,
            **{name: getattr(args, name) for name in (*LAYOUT_FIELDS, *PLACEMENT_FIELDS, *MATTE_FIELDS)}}


def _options(args) -> Options:
    return parse(option_fields(args))


def plan(inputs: list[str], output: str | None, extension: str) -> list[Job]:
    """Map inputs to output paths (see the module docstring); raises ValueError on impossible plans."""
    out = Path(output) if output else None
    single_file_out = out is not None and out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir()
    jobs: list[Job] = []
    for raw in inputs:
        if raw == "-":
            jobs.append(Job(None, out if single_file_out else None))
            continue
        path = Path(raw)
        if path.is_dir():
            for source in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                relative = source.relative_to(path).with_suffix(f".{extension}")
                target = (out / path.name / relative) if out else source.with_name(f"{source.stem}.cutout.{extension}")
                jobs.append(Job(source, target))
        else:
            if single_file_out:
                target = out
            elif out:
                target = out / f"{path.stem}.{extension}"
            else:
                target = path.with_name(f"{path.stem}.cutout.{extension}")
            jobs.append(Job(path, target))
    if single_file_out and len(jobs) != 1:
        raise ValueError(f"-o {output} names one file but there are {len(jobs)} inputs; give a folder instead")
    if sum(job.target is None for job in jobs) > 1:
        raise ValueError("only one input can be written to stdout")
    return jobs


def _process(job: Job, options: Options) -> dict:
    from clearcut.pipeline import process

    data = sys.stdin.buffer.read() if job.source is None else job.source.read_bytes()
    result = process(data, options)
    if job.target is None:
        sys.stdout.buffer.write(result.data)
        sys.stdout.buffer.flush()
    else:
        job.target.parent.mkdir(parents=True, exist_ok=True)
        job.target.write_bytes(result.data)
    return result.metadata


def run(args) -> int:
    options = _options(args)
    try:
        jobs = plan(args.inputs, args.output, options.format)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not jobs:
        print("error: no images found in the inputs", file=sys.stderr)
        return 1
    from tqdm import tqdm

    from clearcut.memory import retain_freed_memory

    if len(jobs) > 1:  # a batch reuses each image's buffers for the next
        retain_freed_memory()
    failures: list[tuple[Job, str]] = []
    flagged: list[tuple[float, Job]] = []
    threshold = options.review_below if options.review_below is not None else config.get("CLEARCUT_REVIEW_BELOW")
    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool, \
            tqdm(total=len(jobs), unit="img", disable=len(jobs) < 2, file=sys.stderr) as bar:
        futures = {pool.submit(_process, job, options): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                score = future.result().get("confidence")
                if score is not None and score < threshold:
                    flagged.append((score, job))
            except ClearcutError as exc:
                failures.append((job, f"{exc.code}: {exc.message}"))
            except OSError as exc:
                failures.append((job, f"io_error: {exc}"))
            bar.update()
    for job, reason in failures:
        print(f"failed: {job.source or '<stdin>'}: {reason}", file=sys.stderr)
    flagged.sort(key=lambda item: item[0])
    for score, job in flagged:
        print(f"review: {job.source or '<stdin>'} (confidence {score:.2f})", file=sys.stderr)
    print(f"{len(jobs) - len(failures)} succeeded, {len(failures)} failed, {len(flagged)} to review "
          f"(confidence below {threshold:g})", file=sys.stderr)
    if args.review_list:
        Path(args.review_list).write_text("".join(f"{job.source or '-'}\n" for _, job in flagged))
    return 1 if failures else 0
