"""Tests of tools/data/make_shapes_dataset.py on tiny datasets."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tool_scripts import load_tool

shapes = load_tool('data/make_shapes_dataset.py')

TINY = dict(img_size=64, num_train_cls=10, num_val_cls=5,
            num_train_scenes=6, num_val_scenes=3)
SCENE_SPLITS = (('train', 'training'), ('val', 'validation'))


def read_tree(root):
    """{relative path: bytes} of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(Path(root).rglob('*')) if p.is_file()}


def rasterize(polygons, height, width):
    """(height, width) bool union of COCO polygons, sampled at pixel centres."""
    centres_y = np.arange(height) + 0.5
    centres_x = np.arange(width) + 0.5
    mask = np.zeros((height, width), dtype=bool)
    for polygon in polygons:
        xs, ys = np.array(polygon[0::2], float), np.array(polygon[1::2], float)
        inside = np.zeros_like(mask)
        for x0, y0, x1, y1 in zip(xs, ys, np.roll(xs, -1), np.roll(ys, -1)):
            if y0 == y1:
                continue
            rows = (centres_y > min(y0, y1)) & (centres_y < max(y0, y1))
            crossing = x0 + (centres_y[rows] - y0) * (x1 - x0) / (y1 - y0)
            inside[rows] ^= centres_x[None, :] > crossing[:, None]
        mask |= inside
    return mask


@pytest.fixture(scope='module', params=shapes.LAYOUTS)
def dataset(tmp_path_factory, request):
    out = tmp_path_factory.mktemp('shapes') / 'seed0'
    options = dict(TINY, layout=request.param)
    return out, shapes.generate(out, seed=0, verbose=False, **options), options


def test_same_seed_gives_identical_files(dataset, tmp_path):
    out, _, options = dataset
    shapes.generate(tmp_path / 'again', seed=0, verbose=False, **options)
    assert read_tree(out) == read_tree(tmp_path / 'again')


def test_other_seed_gives_other_images(dataset, tmp_path):
    out, _, options = dataset
    shapes.generate(tmp_path / 'seed1', seed=1, verbose=False, **options)
    first, second = read_tree(out), read_tree(tmp_path / 'seed1')
    images = [path for path in first if path.endswith('.jpg')]
    assert sum(first[p] != second.get(p) for p in images) == len(images)


def test_classification_folders(dataset):
    out, summary, _ = dataset
    assert (out / 'cls' / 'classes.txt').read_text().split() == list(shapes.CLASSES)
    for split, count in (('train', TINY['num_train_cls']), ('val', TINY['num_val_cls'])):
        files = sorted((out / 'cls' / split).glob('*/*.jpg'))
        assert len(files) == count
        assert {f.parent.name for f in files} == set(shapes.CLASSES)
        assert summary['splits'][f'cls/{split}']['instances'] == {
            name: count // len(shapes.CLASSES) for name in shapes.CLASSES}
        with Image.open(files[0]) as image:
            assert (image.format, image.mode, image.size) == ('JPEG', 'RGB', (64, 64))


def test_coco_polygons_match_label_maps(dataset):
    out, summary, _ = dataset
    for split, ade_split in SCENE_SPLITS:
        coco = json.loads((out / 'det' / 'annotations' / f'instances_{split}.json').read_text())
        assert [c['name'] for c in coco['categories']] == list(shapes.CLASSES)
        assert [c['id'] for c in coco['categories']] == [1, 2, 3, 4, 5]
        images = {image['id']: image for image in coco['images']}
        assert len(images) == summary['splits'][f'scenes/{split}']['images']
        assert len(coco['annotations']) == sum(
            summary['splits'][f'scenes/{split}']['instances'].values())
        for image in images.values():
            stem = Path(image['file_name']).stem
            assert (out / 'det' / split / image['file_name']).read_bytes() == \
                (out / 'seg' / 'images' / ade_split / f'{stem}.jpg').read_bytes()
            with Image.open(out / 'seg' / 'annotations' / ade_split / f'{stem}.png') as png:
                assert png.mode == 'L' and png.size == (image['width'], image['height'])
                image['labels'] = np.asarray(png)
            assert image['labels'].max() <= len(shapes.CLASSES)
        for ann in coco['annotations']:
            image = images[ann['image_id']]
            assert ann['iscrowd'] == 0 and 1 <= ann['category_id'] <= 5
            assert ann['area'] >= shapes.MIN_VISIBLE_AREA
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in ann['segmentation'])
            mask = rasterize(ann['segmentation'], image['height'], image['width'])
            assert mask.sum() == ann['area']
            rows, cols = np.nonzero(mask)
            assert ann['bbox'] == [cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1]
            assert (image['labels'][mask] == ann['category_id']).all()


def test_coco_loads_with_pycocotools(dataset):
    coco_api = pytest.importorskip('pycocotools.coco')
    out, _, _ = dataset
    for split, _ in SCENE_SPLITS:
        coco = coco_api.COCO(str(out / 'det' / 'annotations' / f'instances_{split}.json'))
        assert coco.getCatIds(catNms=list(shapes.CLASSES)) == [1, 2, 3, 4, 5]
        for ann in coco.loadAnns(coco.getAnnIds()):
            assert abs(int(coco.annToMask(ann).sum()) - ann['area']) <= 0.15 * ann['area']


def test_coco_layout_has_coco_sizes_crowds_and_occlusion(tmp_path):
    summary = shapes.generate(tmp_path, num_train_cls=0, num_val_cls=0, num_train_scenes=8,
                              num_val_scenes=1, layout='coco', verbose=False)
    assert not (tmp_path / 'cls').exists() and 'cls/train' not in summary['splits']
    coco = json.loads((tmp_path / 'det' / 'annotations' / 'instances_train.json').read_text())
    sides = [(image['width'], image['height']) for image in coco['images']]
    assert all(max(side) == 640 and 360 <= min(side) <= 640 for side in sides)
    assert len(set(sides)) > 1 and any(w < h for w, h in sides) and any(w > h for w, h in sides)
    per_image = np.bincount([ann['image_id'] for ann in coco['annotations']])[1:]
    assert per_image.max() <= 14 and per_image.mean() >= 5
    sizes = summary['splits']['scenes/train']['sizes']
    assert sum(sizes.values()) == len(coco['annotations'])
    assert min(sizes.values()) >= 0.1 * len(coco['annotations'])  # all three, none rare
    # occlusion: some instances are cut by later ones (their boxes hold other shapes' pixels)
    labels = {image['id']: np.asarray(Image.open(
        tmp_path / 'seg' / 'annotations' / 'training' / image['file_name'].replace('.jpg', '.png')))
        for image in coco['images']}
    covered = [(labels[a['image_id']][a['bbox'][1]:a['bbox'][1] + a['bbox'][3],
                                      a['bbox'][0]:a['bbox'][0] + a['bbox'][2]] > 0).sum()
               for a in coco['annotations']]
    occluded = sum(c > a['area'] * 1.02 + 50 for c, a in zip(covered, coco['annotations']))
    assert occluded >= 0.05 * len(coco['annotations'])


def test_workers_give_the_same_files(tmp_path):
    common = ['--layout', 'coco', '--num-train-cls', '0', '--num-val-cls', '0',
              '--num-train-scenes', '4', '--num-val-scenes', '1']
    for name, workers in (('one', '1'), ('two', '2')):
        subprocess.run([sys.executable, str(shapes.__file__), '--out', str(tmp_path / name),
                        '--workers', workers, *common], check=True, capture_output=True)
    assert read_tree(tmp_path / 'one') == read_tree(tmp_path / 'two')


def test_mask_to_polygons_is_exact_with_holes_and_diagonals():
    rng = np.random.default_rng(0)
    masks = [rng.random((12, 12)) < rng.uniform(0.3, 0.7) for _ in range(20)]
    masks.append(np.pad(np.ones((3, 3), bool), 1) ^ np.pad(np.ones((1, 1), bool), 2))
    for mask in masks:
        polygons = shapes.mask_to_polygons(mask)
        assert (rasterize(polygons, *mask.shape) == mask).all()
    assert shapes.mask_to_polygons(np.zeros((4, 4), bool)) == []


def test_existing_output_is_kept_unless_forced(tmp_path):
    first = shapes.generate(tmp_path, verbose=False, **TINY)
    meta_time = (tmp_path / 'meta.json').stat().st_mtime_ns
    again = shapes.generate(tmp_path, verbose=False, **TINY)
    assert again['skipped'] and not first['skipped']
    assert again['splits'] == first['splits']
    assert (tmp_path / 'meta.json').stat().st_mtime_ns == meta_time
    with pytest.raises(FileExistsError, match='--force'):
        shapes.generate(tmp_path, seed=3, verbose=False, **TINY)
    forced = shapes.generate(tmp_path, seed=3, force=True, verbose=False, **TINY)
    assert not forced['skipped']
    assert json.loads((tmp_path / 'meta.json').read_text())['options']['seed'] == 3
    assert not list(tmp_path.glob('.staging-*'))


@pytest.mark.parametrize('options, message', [
    (dict(img_size=32), 'img_size must be >= 64'),
    (dict(num_train_scenes=0), 'num_train_scenes must be >= 1'),
    (dict(num_val_cls=3), 'num_val_cls must be >= 5 .*or 0 for none'),
    (dict(layout='round'), "unknown layout 'round'"),
    (dict(workers=0), 'workers must be >= 1'),
    (dict(seed=-1), 'seed must be >= 0'),
    (dict(img_size=64.5), 'img_size must be an integer'),
])
def test_bad_arguments_raise(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        shapes.generate(tmp_path / 'out', verbose=False, **{**TINY, **options})
    assert not (tmp_path / 'out').exists()


def test_unwritable_output_raises(tmp_path):
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(OSError, match='not writable'):
        shapes.generate(tmp_path / 'a_file' / 'out', verbose=False, **TINY)


def test_cli(tmp_path, capsys):
    args = ['--out', str(tmp_path), '--img-size', '64', '--num-train-cls', '5',
            '--num-val-cls', '5', '--num-train-scenes', '2', '--num-val-scenes', '1']
    shapes.main(args)
    printed = capsys.readouterr().out
    assert '[scenes/val] wrote 1 images' in printed
    assert 'cls/train' in printed.splitlines()[-4]
    with pytest.raises(SystemExit) as error:
        shapes.main(args[:2] + ['--num-train-scenes', '0'])
    assert error.value.code == 2
    assert 'num_train_scenes must be >= 1' in capsys.readouterr().err
