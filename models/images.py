"""Real photographs, ImageNet's class names and each model family's preprocessing, in one place.

The photographs ship inside wheels convbench pins (scikit-image's ``skimage.data``, matplotlib's sample data):
nothing is downloaded. Each labelled photograph has the set of ImageNet classes that are an acceptable answer
(a cat photo accepts tabby, tiger cat and Egyptian cat), chosen from what the picture shows, not from what any
model predicts.

Preprocessing (`PREPROCESS`):

- ``"imagenet"`` (torchvision's models): shorter side resized to 256/224 of the crop, centre crop, RGB scaled to
  [0, 1] and normalised with ImageNet's mean and standard deviation.
- ``"efficientnet_lite"``: TensorFlow's EfficientNet evaluation preprocessing, which the lite checkpoints were
  trained with — a centre crop of image_size/(image_size + 32) of the shorter side, bicubic resize to
  image_size, then ``(x − 127) / 128`` per channel (the lite models' ``MEAN_RGB = 127``, ``STDDEV_RGB = 128``;
  the PyTorch port's README example uses torchvision's normalisation instead, which is not what the weights saw).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..ir.errors import IRError

DATA = Path(__file__).resolve().parent / "data"


class ImageError(IRError):
    """A photograph that cannot be used: names it and what is wrong."""


@dataclass(frozen=True)
class Photo:
    name: str
    source: str  # where it ships
    accept: frozenset[int]  # ImageNet classes that are a right answer
    shows: str


def _skimage(name: str):
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle is a (left, right, disp) triple
    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib
    from PIL import Image

    with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg") as im:
        return np.asarray(im.convert("RGB"))


PHOTOS: dict[str, Photo] = {p.name: p for p in (
    Photo("chelsea", "skimage.data.chelsea", frozenset({281, 282, 285}), "a tabby cat"),
    Photo("coffee", "skimage.data.coffee", frozenset({967, 968, 504}), "a cup of espresso on a saucer"),
    Photo("rocket", "skimage.data.rocket", frozenset({812, 657, 744}), "the space shuttle on its launch pad"),
    Photo("motorcycle", "skimage.data.stereo_motorcycle (left view)", frozenset({665, 670, 518}),
          "a motorcycle with a helmet"),
    Photo("grace_hopper", "matplotlib sample_data/grace_hopper.jpg", frozenset({652, 906, 457, 834}),
          "Grace Hopper in navy uniform and tie"),
)}
# Photographs without an ImageNet class of their own: usable for calibration and statistics, not for accuracy.
UNLABELLED = ("astronaut", "hubble_deep_field", "immunohistochemistry")
_LOADERS = {"chelsea": _skimage("chelsea"), "coffee": _skimage("coffee"), "rocket": _skimage("rocket"),
            "motorcycle": _skimage("stereo_motorcycle"), "grace_hopper": _grace_hopper,
            **{n: _skimage(n) for n in UNLABELLED}, "camera": _skimage("camera")}
MIN_SIDE = 32  # pixels: below this a crop has nothing left to classify


@functools.cache
def class_names() -> tuple[str, ...]:
    """ImageNet-1k's 1000 class names, in class-index order (synonyms joined with ", ")."""
    names = tuple((DATA / "imagenet_classes.txt").read_text().splitlines())
    if len(names) != 1000:
        raise ImageError(f"{DATA / 'imagenet_classes.txt'}: expected 1000 class names, found {len(names)}")
    return names


def short_name(index: int) -> str:
    return class_names()[index].split(",")[0]


def names() -> list[str]:
    """The bundled photographs, labelled first."""
    return [*PHOTOS, *UNLABELLED]


def load(name_or_path: str | Path) -> np.ndarray:
    """An RGB photograph as uint8 (H, W, 3): a bundled one by name, or an image file."""
    name = str(name_or_path)
    if name in _LOADERS:
        try:
            image = _LOADERS[name]()
        except (ImportError, ModuleNotFoundError) as e:
            raise ImageError(f"photograph {name!r} needs scikit-image: pip install -c constraints.txt "
                             f"'convbench[weights]' ({e})") from None
        return check_rgb(np.asarray(image), name)
    path = Path(name)
    if not path.is_file():
        raise ImageError(f"no photograph named {name!r} and no such file; bundled: {', '.join(names())}")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
                raise ImageError(f"{path}: a {im.mode} image; the models take colour (RGB) photographs")
            return check_rgb(np.asarray(im.convert("RGB")), str(path))
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"{path}: not an image PIL can read ({e})") from None


def check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim != 3 or image.shape[2] != 3:
        kind = "grayscale" if image.ndim == 2 else f"shaped {image.shape}"
        raise ImageError(f"photograph {what!r} is {kind}; the models take colour (RGB) photographs")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageError(f"photograph {what!r} is {image.shape[1]}×{image.shape[0]}: "
                         f"smaller than {MIN_SIDE} pixels on a side")
    if image.dtype == np.bool_ or not np.issubdtype(image.dtype, np.integer):
        raise ImageError(f"photograph {what!r} has dtype {image.dtype}; expected 8-bit colour")
    return image.astype(np.uint8, copy=False)


@dataclass(frozen=True)
class Preprocess:
    """A centred crop of size/(size + crop_padding) of the shorter side (all of it for 0), resized to size×size,
    then (x − mean) / std with x in the 0–255 range. torchvision's resize-256-crop-224 is crop_padding 32 at 224,
    as is TensorFlow's EfficientNet evaluation crop."""

    crop_padding: int
    resample: str  # PIL filter name
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: np.ndarray, size: int) -> np.ndarray:
        """(H, W, 3) uint8 → (3, size, size) float32."""
        from PIL import Image

        h, w = image.shape[:2]
        side = max(1, round(min(h, w) * size / (size + self.crop_padding)))
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(image[top:top + side, left:left + side])
        resized = np.asarray(crop.resize((size, size), getattr(Image.Resampling, self.resample)), np.float32)
        out = (resized - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(out.transpose(2, 0, 1))


PREPROCESS: dict[str, Preprocess] = {
    "imagenet": Preprocess(32, "BILINEAR", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    "efficientnet_lite": Preprocess(32, "BICUBIC", (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
}


def batch(photos: list[str], size: int, preprocess: str = "imagenet") -> np.ndarray:
    """(N, 3, size, size) float32 of the named photographs (or paths), preprocessed one way."""
    if preprocess not in PREPROCESS:
        raise ImageError(f"unknown preprocessing {preprocess!r}; known: {', '.join(PREPROCESS)}")
    return np.stack([PREPROCESS[preprocess](load(p), size) for p in photos])


def views(photo: str, count: int, size: int, preprocess: str = "imagenet", seed: int = 0) -> np.ndarray:
    """``count`` seeded views of one photograph — random crops of 60–100 % of the shorter side, mirrored half the
    time — for calibration and statistics: (count, 3, size, size) float32."""
    rng = np.random.default_rng([seed, *photo.encode()])
    image = load(photo)
    step = PREPROCESS[preprocess]
    out = []
    h, w = image.shape[:2]
    for _ in range(count):
        side = int(min(h, w) * rng.uniform(0.6, 1.0))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        view = image[top:top + side, left:left + side]
        if rng.random() < 0.5:
            view = view[:, ::-1]
        out.append(Preprocess(0, step.resample, step.mean, step.std)(np.ascontiguousarray(view), size))
    return np.stack(out)
