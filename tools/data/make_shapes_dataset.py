#!/usr/bin/env python
"""Generate the small *shapes* dataset in the stock OpenMMLab formats.

Five shape classes are drawn on textured backgrounds with numpy and Pillow
only. The output directory holds::

    OUT/cls/{train,val}/<class>/<idx>.jpg       mmpretrain CustomDataset
    OUT/cls/classes.txt
    OUT/det/{train,val}/<idx>.jpg               mmdet CocoDataset
    OUT/det/annotations/instances_{train,val}.json
    OUT/seg/images/{training,validation}/<idx>.jpg        mmseg BaseSegDataset
    OUT/seg/annotations/{training,validation}/<idx>.png   0 = background,
                                                          1..5 = CLASSES
    OUT/meta.json                               options and summary

The detection and segmentation views show the same scene images. Each image
is drawn from its own numpy Generator seeded with (seed, split, index), so the
same options give byte-identical files (with any number of --workers) and
changing a count does not reshuffle the other images.

Scene layouts (--layout):

* ``square`` (the quickstart's): --img-size square scenes of 1-4 shapes.
* ``coco``: images sized as COCO's (long side 640, short side 360-640,
  landscape or portrait), 3-14 shapes each of COCO's three size ranges (visible
  area under 32x32, 32x32-96x96, over 96x96 pixels, in about COCO's shares),
  overlapping one another (occlusion). For checking detectors and segmentors at
  COCO resolution (tools/analysis/check_paper_configs.py); --img-size then
  only sizes the classification images.

--num-train-cls 0 --num-val-cls 0 writes the scenes alone.

Usage::

    python tools/data/make_shapes_dataset.py --out data/shapes [--seed 0]
        [--img-size 128] [--layout square|coco] [--num-train-cls 3000]
        [--num-val-cls 500] [--num-train-scenes 1200] [--num-val-scenes 60]
        [--texture-contrast 0.3] [--workers 1] [--force]
"""
import argparse
import io
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Alphabetical, because mmpretrain's CustomDataset numbers the class folders
# in sorted order; COCO category ids and label-map values follow the same
# order (CLASSES[i] is category id i + 1 and label value i + 1).
CLASSES = ('circle', 'ring', 'square', 'star', 'triangle')
FORMAT_VERSION = 2
JPEG_QUALITY = 95
MIN_IMG_SIZE = 64
SUPERSAMPLE = 4            # shapes are rasterised at 4x and box-filtered
MIN_CONTRAST = 100.0       # wanted RGB distance of a shape to what it covers
COLOUR_TRIES = 32
TEXTURE_CONTRAST = 0.3     # default share of the background texture kept
MAX_INSTANCES = 4
PLACEMENT_TRIES = 30
MAX_OVERLAP = 0.25         # share of a new instance lying on earlier ones
KEEP_VISIBLE = 0.6         # share of an earlier instance that must stay visible
MIN_VISIBLE_AREA = 30      # instances with fewer visible pixels are dropped

LAYOUTS = ('square', 'coco')
COCO_LONG_SIDE = 640
COCO_SHORT_SIDES = (360, 640)
COCO_LANDSCAPE_SHARE = 0.7
COCO_INSTANCES = (3, 14)
# circumradius ranges that give visible areas mostly in COCO's small (< 32^2), medium and large
# (> 96^2) ranges, drawn in about COCO's shares of instances (41%, 34%, 24%); the large range's
# upper end is a share of the short side
COCO_RADII = {'small': (5.0, 16.0), 'medium': (16.0, 50.0), 'large': (50.0, 0.45)}
COCO_SIZE_SHARES = {'small': 0.41, 'medium': 0.34, 'large': 0.25}
COCO_AREA_RANGES = {'small': (0, 32**2), 'medium': (32**2, 96**2), 'large': (96**2, float('inf'))}
COCO_MAX_OVERLAP = 0.4     # more occlusion than the square scenes
COCO_KEEP_VISIBLE = 0.5

SPLIT_CODES = {'cls/train': 0, 'cls/val': 1, 'scenes/train': 2,
               'scenes/val': 3}
ADE_SPLITS = {'train': 'training', 'val': 'validation'}


# ---------------------------------------------------------------- drawing --

def image_rng(seed, split, index):
    """Generator of one image, seeded from (seed, split, index)."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def _hw(size):
    """(height, width) of an int (square) or (height, width) size."""
    return (size, size) if isinstance(size, (int, np.integer)) else tuple(size)


def _pixel_grid(size):
    """(H, W) float32 x and y coordinates of the pixel centres; size: int or (H, W)."""
    height, width = _hw(size)
    return np.meshgrid(np.arange(width, dtype=np.float32) + 0.5,
                       np.arange(height, dtype=np.float32) + 0.5)


def _smooth_noise(rng, size, cells):
    """(H, W, 3) float32 colour noise in [0, 255], `cells` blobs wide."""
    height, width = _hw(size)
    coarse = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    smooth = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    return np.asarray(smooth, dtype=np.float32)


def draw_background(rng, size, contrast=1.0):
    """(H, W, 3) float32 textured background in [0, 255]; size: int or (H, W).

    One of: colour gradient, stripes, smooth colour noise, checkerboard (all
    at random angles and scales), plus faint smooth and pixel noise; then
    pulled towards its mean colour, `contrast` being the share of the texture
    kept (the shapes, drawn at MIN_CONTRAST from it, stay the strongest edges).
    """
    xx, yy = _pixel_grid(size)
    side = min(_hw(size))
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = yy * np.cos(angle) - xx * np.sin(angle)
    colours = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    kind = rng.integers(4)
    if kind == 2:
        image = _smooth_noise(rng, size, int(rng.integers(3, 9)))
    else:
        if kind == 0:  # linear gradient
            mix = (u - u.min()) / (u.max() - u.min())
        elif kind == 1:  # stripes, from soft to hard edged
            period = rng.uniform(6, side / 3)
            wave = np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
            mix = np.clip(0.5 + 0.5 * wave * rng.uniform(1, 8), 0, 1)
        else:  # checkerboard
            cell = rng.uniform(4, side / 4)
            mix = (np.floor(u / cell) + np.floor(v / cell)) % 2
        mix = mix[..., None]
        image = colours[0] * (1 - mix) + colours[1] * mix
    image += (_smooth_noise(rng, size, 4) - 127.5) * rng.uniform(0, 0.3)
    image += rng.normal(0, rng.uniform(1, 6), image.shape)
    mean = image.mean(axis=(0, 1), keepdims=True)
    image = mean + contrast * (image - mean)
    return np.clip(image, 0, 255).astype(np.float32)


def _polygon_vertices(name, centre, radius, angle, rng):
    """[(x, y)] corners of a square, triangle or five-pointed star."""
    if name == 'star':
        radii = (radius, radius * rng.uniform(0.38, 0.5))
        count = 10
    else:
        radii = (radius, )
        count = 4 if name == 'square' else 3
    return [(centre[0] + radii[k % len(radii)] * np.cos(angle + 2 * np.pi * k / count),
             centre[1] + radii[k % len(radii)] * np.sin(angle + 2 * np.pi * k / count))
            for k in range(count)]


def shape_coverage(name, centre, radius, angle, rng, size):
    """(H, W) float32 share of each pixel covered by the shape; size: int or (H, W).

    centre: (x, y) in pixels, pixel (r, c) being the square [c, c+1] x [r, r+1];
    radius: circumradius; angle: rotation in radians; rng draws the star and
    ring proportions. Only the pixels around the shape are rasterised (whole
    pixels, so the result is that of the full canvas).
    """
    height, width = _hw(size)
    scale = SUPERSAMPLE
    left = int(np.clip(np.floor(centre[0] - radius) - 1, 0, width))
    top = int(np.clip(np.floor(centre[1] - radius) - 1, 0, height))
    right = int(np.clip(np.ceil(centre[0] + radius) + 1, left, width))
    bottom = int(np.clip(np.ceil(centre[1] + radius) + 1, top, height))
    canvas = Image.new('L', ((right - left) * scale, (bottom - top) * scale), 0)
    draw = ImageDraw.Draw(canvas)

    def to_canvas(x, y):
        return (x - left) * scale - 0.5, (y - top) * scale - 0.5

    if name in ('circle', 'ring'):
        radii = [radius]
        if name == 'ring':
            radii.append(radius * rng.uniform(0.45, 0.65))
        for fill, r in zip((255, 0), radii):
            draw.ellipse(to_canvas(centre[0] - r, centre[1] - r)
                         + to_canvas(centre[0] + r, centre[1] + r), fill=fill)
    else:
        vertices = _polygon_vertices(name, centre, radius, angle, rng)
        draw.polygon([to_canvas(x, y) for x, y in vertices], fill=255)
    pixels = np.asarray(canvas, dtype=np.float32)
    coverage = np.zeros((height, width), dtype=np.float32)
    coverage[top:bottom, left:right] = pixels.reshape(
        bottom - top, scale, right - left, scale).mean(axis=(1, 3)) / 255
    return coverage


def _random_shape(rng, size, name, radius_range):
    """Coverage (H, W) of `name` at a random place, size and angle; size: int or (H, W)."""
    height, width = _hw(size)
    radius = rng.uniform(*radius_range)
    centre = rng.uniform(radius, np.array([width, height]) - radius)
    angle = rng.uniform(0, 2 * np.pi)
    return shape_coverage(name, centre, radius, angle, rng, size)


def _pick_colour(rng, canvas, mask):
    """(3,) RGB colour far from the canvas pixels under the (H, W) mask.

    Scored by the 10th percentile of the per-pixel RGB distance; the first
    colour reaching MIN_CONTRAST is taken, else the best of COLOUR_TRIES.
    """
    covered = canvas[mask]
    best_colour, best_score = None, -1.0
    for _ in range(COLOUR_TRIES):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        score = np.percentile(np.linalg.norm(covered - colour, axis=1), 10)
        if score > best_score:
            best_colour, best_score = colour, score
        if score >= MIN_CONTRAST:
            break
    return best_colour


def _paint_shape(rng, canvas, coverage):
    """Blend a shaded, contrasting colour into (H, W, 3) canvas, in place."""
    colour = _pick_colour(rng, canvas, coverage >= 0.5)
    xx, yy = _pixel_grid(canvas.shape[:2])
    angle = rng.uniform(0, 2 * np.pi)
    shading = (xx * np.cos(angle) + yy * np.sin(angle)) / max(canvas.shape[:2])
    fill = (colour + (shading * rng.uniform(0, 50))[..., None]
            + rng.normal(0, 3, canvas.shape))
    alpha = coverage[..., None]
    canvas *= 1 - alpha
    canvas += alpha * fill


def _to_uint8(canvas):
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def make_classification_image(rng, size, label, contrast=1.0):
    """(size, size, 3) uint8 image of one large CLASSES[label] shape near the
    centre, at a random size and angle (an object-centric photo, as ImageNet's
    are: off-centre and small shapes made a task that a few minutes of CPU
    training could not learn)."""
    canvas = draw_background(rng, size, contrast)
    radius = rng.uniform(0.3 * size, 0.42 * size)
    centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
    coverage = shape_coverage(CLASSES[label], centre, radius, rng.uniform(0, 2 * np.pi), rng,
                              size)
    _paint_shape(rng, canvas, coverage)
    return _to_uint8(canvas)


def _place_instance(rng, size, radius_range, visible_masks, max_overlap=MAX_OVERLAP,
                    keep_visible=KEEP_VISIBLE):
    """(label, coverage, mask) of a random instance hiding little of the
    earlier (H, W) visible masks, or None when no try fits."""
    occupied = np.zeros(_hw(size), dtype=bool)
    for visible in visible_masks:
        occupied |= visible
    for _ in range(PLACEMENT_TRIES):
        label = int(rng.integers(len(CLASSES)))
        coverage = _random_shape(rng, size, CLASSES[label], radius_range)
        mask = coverage >= 0.5
        area = int(mask.sum())
        if area < MIN_VISIBLE_AREA or (mask & occupied).sum() > max_overlap * area:
            continue
        if all((visible & ~mask).sum() >= keep_visible * visible.sum()
               for visible in visible_masks):
            return label, coverage, mask
    return None


def _compose_scene(rng, canvas, radius_ranges, max_overlap=MAX_OVERLAP,
                   keep_visible=KEEP_VISIBLE):
    """Paint one shape per radius range into the (H, W, 3) canvas, later ones on top;
    returns make_scene's label map, labels and visible masks."""
    label_map = np.zeros(canvas.shape[:2], dtype=np.uint8)
    labels, masks = [], []
    for radius_range in radius_ranges:
        placed = _place_instance(rng, canvas.shape[:2], radius_range, masks, max_overlap,
                                 keep_visible)
        if placed is None:
            continue
        label, coverage, mask = placed
        _paint_shape(rng, canvas, coverage)
        label_map[mask] = label + 1
        masks = [visible & ~mask for visible in masks] + [mask]
        labels.append(label)
    kept = [i for i, mask in enumerate(masks) if mask.sum() >= MIN_VISIBLE_AREA]
    return label_map, [labels[i] for i in kept], [masks[i] for i in kept]


def make_scene(rng, size, contrast=1.0):
    """Random square scene of 1-4 shapes, later ones drawn on top.

    Returns image (size, size, 3) uint8, label map (size, size) uint8 (0 =
    background, i + 1 = CLASSES[i], every drawn pixel labelled), labels
    [int] and visible masks [(size, size) bool] of the instances whose visible
    area is at least MIN_VISIBLE_AREA.
    """
    canvas = draw_background(rng, size, contrast)
    radius_range = (max(6.0, 0.07 * size), 0.2 * size)
    count = rng.integers(1, MAX_INSTANCES + 1)
    label_map, labels, masks = _compose_scene(rng, canvas, [radius_range] * count)
    return _to_uint8(canvas), label_map, labels, masks


def make_coco_scene(rng, contrast=1.0):
    """Random scene sized as COCO's images, of 3-14 shapes of COCO's three size ranges that
    overlap one another; returns what make_scene does, at (H, W) of the drawn size."""
    short = int(rng.integers(COCO_SHORT_SIDES[0], COCO_SHORT_SIDES[1] + 1))
    landscape = rng.random() < COCO_LANDSCAPE_SHARE
    height, width = (short, COCO_LONG_SIDE) if landscape else (COCO_LONG_SIDE, short)
    canvas = draw_background(rng, (height, width), contrast)
    kinds = list(COCO_RADII)
    count = int(rng.integers(COCO_INSTANCES[0], COCO_INSTANCES[1] + 1))
    drawn = rng.choice(len(kinds), count, p=[COCO_SIZE_SHARES[k] for k in kinds])
    radius_ranges = []
    for index in drawn:
        low, high = COCO_RADII[kinds[index]]
        radius_ranges.append((low, high if high > 1 else high * min(height, width)))
    label_map, labels, masks = _compose_scene(rng, canvas, radius_ranges, COCO_MAX_OVERLAP,
                                              COCO_KEEP_VISIBLE)
    return _to_uint8(canvas), label_map, labels, masks


def coco_size_range(area):
    """'small', 'medium' or 'large': COCO's size range of a visible area in pixels."""
    return next(k for k, (low, high) in COCO_AREA_RANGES.items() if low <= area < high)


# ------------------------------------------------------ mask to polygons --

# (neighbour offset (dr, dc), start corner (dx, dy), direction (dx, dy)) of
# each pixel side; the edges run with the region on their left as seen on
# screen (y pointing down), so outer outlines have negative signed area.
_PIXEL_SIDES = (((-1, 0), (1, 0), (-1, 0)),   # top
                ((0, -1), (0, 0), (0, 1)),    # left
                ((1, 0), (0, 1), (1, 0)),     # bottom
                ((0, 1), (1, 1), (0, -1)))    # right


def _trace_outlines(region):
    """Outlines of a (H, W) bool region along the pixel edges.

    Returns [(K, 2) int corner points (x, y)]: one outline per 8-connected
    component and one per (4-connected) hole. Where two pixels touch only
    diagonally the walk turns right, which keeps them in one outline.
    """
    height, width = region.shape
    padded = np.pad(region, 1)
    outgoing = {}
    for (dr, dc), (sx, sy), direction in _PIXEL_SIDES:
        neighbour = padded[1 + dr:1 + dr + height, 1 + dc:1 + dc + width]
        for r, c in zip(*np.nonzero(region & ~neighbour)):
            outgoing.setdefault((int(c) + sx, int(r) + sy), []).append(direction)
    unused = {(vertex, d) for vertex, directions in outgoing.items() for d in directions}
    outlines = []
    while unused:
        start = edge = min(unused)
        walk = []
        while True:
            walk.append(edge)
            unused.discard(edge)
            (x, y), (dx, dy) = edge
            vertex = (x + dx, y + dy)
            options = outgoing[vertex]
            edge = (vertex, options[0] if len(options) == 1 else (-dy, dx))
            if edge == start:
                break
        corners = [vertex for (vertex, d), (_, before) in zip(walk, walk[-1:] + walk)
                   if d != before]
        outlines.append(np.array(corners, dtype=np.int64))
    return outlines


def _signed_area(outline):
    """Shoelace area of (K, 2) points: negative for outer outlines."""
    x, y = outline[:, 0], outline[:, 1]
    return int(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) // 2


def mask_to_polygons(mask):
    """COCO polygons covering exactly the pixels of a (H, W) bool mask.

    Pixel (r, c) is the square [c, c+1] x [r, r+1], as in pycocotools. COCO
    polygons cannot hold holes, so a region with a hole is cut at the hole's
    leftmost column: the hole then opens on both sides and no new hole
    appears. Returns [[x0, y0, x1, y1, ...]], at least 8 numbers each.
    """
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return []
    top, left = rows.min(), cols.min()
    pieces = [mask[top:rows.max() + 1, left:cols.max() + 1]]
    polygons = []
    while pieces:
        piece = pieces.pop()
        outlines = _trace_outlines(piece)
        holes = [outline for outline in outlines if _signed_area(outline) > 0]
        if not holes:
            polygons += [(outline + (left, top)).ravel().tolist() for outline in outlines]
            continue
        column = int(holes[0][:, 0].min())
        left_part = piece.copy()
        left_part[:, column + 1:] = False
        pieces += [piece & ~left_part, left_part]
    return polygons


def coco_annotation(ann_id, image_id, label, mask):
    """COCO instance dict of CLASSES[label] with the (H, W) visible mask."""
    rows, cols = np.nonzero(mask)
    left, top = int(cols.min()), int(rows.min())
    return {
        'id': ann_id,
        'image_id': image_id,
        'category_id': label + 1,
        'bbox': [left, top, int(cols.max()) + 1 - left, int(rows.max()) + 1 - top],
        'area': int(rows.size),
        'iscrowd': 0,
        'segmentation': mask_to_polygons(mask),
    }


# ---------------------------------------------------------------- writing --

def _jpeg_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=JPEG_QUALITY)
    return buffer.getvalue()


def _png_bytes(label_map):
    buffer = io.BytesIO()
    Image.fromarray(label_map, mode='L').save(buffer, format='PNG')
    return buffer.getvalue()


def _write_classification_split(root, split, count, seed, size, contrast):
    """Write cls/<split> under root; return (written paths, summary)."""
    split_dir = root / 'cls' / split
    for name in CLASSES:
        (split_dir / name).mkdir(parents=True)
    per_class = dict.fromkeys(CLASSES, 0)
    for index in range(count):
        label = index % len(CLASSES)
        image = make_classification_image(
            image_rng(seed, f'cls/{split}', index), size, label, contrast)
        (split_dir / CLASSES[label] / f'{index:06d}.jpg').write_bytes(_jpeg_bytes(image))
        per_class[CLASSES[label]] += 1
    paths = [f'cls/{split}']
    if split == 'train':
        (root / 'cls' / 'classes.txt').write_text(''.join(f'{c}\n' for c in CLASSES))
        paths.append('cls/classes.txt')
    return paths, {'images': count, 'instances': per_class}


def draw_scene_files(job):
    """One scene as files: job (seed, split, index, size, contrast, layout) ->
    (jpeg bytes, label-map png bytes, (height, width), [COCO annotation with ids 0]).
    A module-level function, so that worker processes can run it."""
    seed, split, index, size, contrast, layout = job
    rng = image_rng(seed, f'scenes/{split}', index)
    if layout == 'coco':
        image, label_map, labels, masks = make_coco_scene(rng, contrast)
    else:
        image, label_map, labels, masks = make_scene(rng, size, contrast)
    annotations = [coco_annotation(0, 0, label, mask) for label, mask in zip(labels, masks)]
    return _jpeg_bytes(image), _png_bytes(label_map), image.shape[:2], annotations


def _map_in_order(function, jobs, workers):
    """function over jobs, in order, in `workers` processes (1: this one)."""
    if workers <= 1:
        yield from map(function, jobs)
        return
    with multiprocessing.get_context('spawn').Pool(workers) as pool:
        yield from pool.imap(function, jobs, chunksize=4)


def _write_scene_split(root, split, count, seed, size, contrast, layout='square', workers=1):
    """Write the det and seg views of scenes/<split> under root; return
    (written paths, summary)."""
    ade = ADE_SPLITS[split]
    paths = [f'det/{split}', f'det/annotations/instances_{split}.json',
             f'seg/images/{ade}', f'seg/annotations/{ade}']
    det_dir, ann_file, seg_image_dir, seg_label_dir = (root / p for p in paths)
    for directory in (det_dir, ann_file.parent, seg_image_dir, seg_label_dir):
        directory.mkdir(parents=True)
    images, annotations = [], []
    per_class = dict.fromkeys(CLASSES, 0)
    per_size = dict.fromkeys(COCO_AREA_RANGES, 0)
    jobs = [(seed, split, index, size, contrast, layout) for index in range(count)]
    for index, (jpeg, png, (height, width), anns) in enumerate(
            _map_in_order(draw_scene_files, jobs, workers)):
        name = f'{index:06d}'
        (det_dir / f'{name}.jpg').write_bytes(jpeg)
        (seg_image_dir / f'{name}.jpg').write_bytes(jpeg)
        (seg_label_dir / f'{name}.png').write_bytes(png)
        images.append({'id': index + 1, 'file_name': f'{name}.jpg',
                       'width': int(width), 'height': int(height)})
        for ann in anns:
            annotations.append({**ann, 'id': len(annotations) + 1, 'image_id': index + 1})
            per_class[CLASSES[ann['category_id'] - 1]] += 1
            per_size[coco_size_range(ann['area'])] += 1
    coco = {
        'info': {'description': f'shapes scenes/{split}', 'version': str(FORMAT_VERSION)},
        'images': images,
        'annotations': annotations,
        'categories': [{'id': i + 1, 'name': name, 'supercategory': 'shape'}
                       for i, name in enumerate(CLASSES)],
    }
    ann_file.write_text(json.dumps(coco, separators=(',', ':')))
    return paths, {'images': count, 'instances': per_class, 'sizes': per_size}


def _publish(staging, out, paths):
    """Move the staged relative paths into out, replacing older versions."""
    for rel in paths:
        target = out / rel
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, target)


def _check_options(options, workers=1):
    minimums = {'seed': 0, 'img_size': MIN_IMG_SIZE,
                'num_train_cls': len(CLASSES), 'num_val_cls': len(CLASSES),
                'num_train_scenes': 1, 'num_val_scenes': 1, 'workers': 1}
    for key, minimum in minimums.items():
        value = workers if key == 'workers' else options[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'{key} must be an integer, got {value!r}')
        if key.endswith('_cls') and value == 0:  # no classification split
            continue
        if value < minimum:
            why = (' (one image per class at least), or 0 for none' if key.endswith('_cls')
                   else '')
            raise ValueError(f'{key} must be >= {minimum}{why}, got {value}')
    if options['layout'] not in LAYOUTS:
        raise ValueError(f"unknown layout {options['layout']!r}; valid: {', '.join(LAYOUTS)}")
    contrast = options['texture_contrast']
    if isinstance(contrast, bool) or not isinstance(contrast, (int, float)) \
            or not 0 <= contrast <= 1:
        raise ValueError(f'texture_contrast must be a number in [0, 1], got {contrast!r}')


def _ensure_writable(out):
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise OSError(f'output path {out} is not writable: {error}') from error


def _write_text_atomic(path, text):
    staging = path.with_name(f'.{path.name}.tmp')
    staging.write_text(text)
    os.replace(staging, path)


def format_summary(summary):
    """Table of images and instances per class (and per COCO size range, for the scenes) for
    each split."""
    header = (f"{'split':<14}{'images':>7}" + ''.join(f'{c:>10}' for c in CLASSES)
              + ''.join(f'{k:>8}' for k in COCO_AREA_RANGES))
    lines = [header]
    for split, counts in summary['splits'].items():
        sizes = counts.get('sizes', {})
        lines.append(f"{split:<14}{counts['images']:>7}"
                     + ''.join(f"{counts['instances'][c]:>10}" for c in CLASSES)
                     + ''.join(f"{sizes[k]:>8}" if k in sizes else f"{'':>8}"
                               for k in COCO_AREA_RANGES))
    return '\n'.join(lines)


def generate(out, seed=0, img_size=128, num_train_cls=3000, num_val_cls=500,
             num_train_scenes=1200, num_val_scenes=60, texture_contrast=TEXTURE_CONTRAST,
             layout='square', workers=1, force=False, verbose=True):
    """Write the dataset to `out`; return its summary.

    The summary is {'out', 'skipped', 'options', 'classes', 'splits': {split:
    {'images': int, 'instances': {class: int}, 'sizes' (scenes): {COCO size range:
    int}}}}. A complete output made with the same options is kept (skipped=True)
    unless force; one made with other options raises FileExistsError unless
    force. workers: processes drawing the scenes (the files do not depend on it).
    """
    log = print if verbose else (lambda *args: None)
    options = {'seed': seed, 'img_size': img_size,
               'num_train_cls': num_train_cls, 'num_val_cls': num_val_cls,
               'num_train_scenes': num_train_scenes, 'num_val_scenes': num_val_scenes,
               'texture_contrast': texture_contrast, 'layout': layout}
    _check_options(options, workers)
    out = Path(out)
    _ensure_writable(out)
    meta_path = out / 'meta.json'
    if meta_path.exists() and not force:
        meta = json.loads(meta_path.read_text())
        # outputs written before layouts existed are square ones
        made_with = {'layout': 'square', **meta.get('options', {})}
        if meta.get('format_version') == FORMAT_VERSION and made_with == options:
            log(f'{out}: complete shapes dataset with these options exists, left as is '
                '(--force regenerates)')
            return {'out': str(out), 'skipped': True, **meta['summary']}
        raise FileExistsError(
            f'{out} holds a shapes dataset made with other options '
            f"({meta.get('options')}); pass --force to regenerate it")
    meta_path.unlink(missing_ok=True)

    scene_options = dict(layout=layout, workers=workers)
    plan = [('cls/train', _write_classification_split, 'train', num_train_cls, {}),
            ('cls/val', _write_classification_split, 'val', num_val_cls, {}),
            ('scenes/train', _write_scene_split, 'train', num_train_scenes, scene_options),
            ('scenes/val', _write_scene_split, 'val', num_val_scenes, scene_options)]
    splits = {}
    for split, writer, subset, count, extra in plan:
        if count == 0:
            continue
        started = time.perf_counter()
        log(f'[{split}] drawing {count} images ...')
        with tempfile.TemporaryDirectory(dir=out, prefix='.staging-') as staging:
            paths, splits[split] = writer(Path(staging), subset, count, seed, img_size,
                                          texture_contrast, **extra)
            _publish(Path(staging), out, paths)
        instances = sum(splits[split]['instances'].values())
        log(f'[{split}] wrote {count} images, {instances} instances '
            f'in {time.perf_counter() - started:.1f} s')
    summary = {'options': options, 'classes': list(CLASSES), 'splits': splits}
    _write_text_atomic(meta_path, json.dumps(
        {'format_version': FORMAT_VERSION, 'options': options, 'summary': summary},
        indent=2) + '\n')
    log(f'shapes dataset written to {out}\n{format_summary(summary)}')
    return {'out': str(out), 'skipped': False, **summary}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--img-size', type=int, default=128,
                        help=f'square image side in pixels (>= {MIN_IMG_SIZE}); with --layout '
                        'coco, of the classification images only')
    parser.add_argument('--layout', choices=LAYOUTS, default='square',
                        help='scenes: square --img-size ones of 1-4 shapes, or COCO-sized '
                        'images of 3-14 overlapping shapes of all three COCO size ranges')
    parser.add_argument('--num-train-cls', type=int, default=3000, help='0: none')
    parser.add_argument('--num-val-cls', type=int, default=500, help='0: none')
    parser.add_argument('--num-train-scenes', type=int, default=1200)
    parser.add_argument('--num-val-scenes', type=int, default=60)
    parser.add_argument('--texture-contrast', type=float, default=TEXTURE_CONTRAST,
                        help='share of the background texture kept, 0 (plain) to 1')
    parser.add_argument('--workers', type=int, default=1,
                        help='processes drawing the scenes (the output does not depend on it)')
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if a complete output exists')
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        generate(**vars(args))
    except (ValueError, OSError) as error:
        parser.error(str(error))


if __name__ == '__main__':
    main()
