"""ImageFolder: images in the ImageNet layout, one sub-folder per class
(``root/<class name>/<image>.JPEG``), decoded with Pillow.

Pillow is the ``data`` extra (``pip install "deepconv[data]"``) and is
imported only when an image is decoded, so the rest of deepconv works
without it.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from deepconv.data.transforms import sample_rng
from deepconv.nn.layer import check_bool, check_int

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "ImageLoadError", "import_pillow", "load_image",
           "read_class_index", "write_class_index"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # compared case-insensitively (ImageNet: .JPEG)
ON_ERROR = ("raise", "skip")
_INSTALL_HINT = 'pip install pillow (or: pip install "deepconv[data]")'


class ImageLoadError(ValueError):
    """An image file that cannot be decoded; ``path`` names it."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: cannot decode the image ({reason})")
        self.path = str(path)
        self.reason = str(reason)


def import_pillow():
    """``PIL.Image``, or ImportError saying how to install Pillow."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(f"reading images needs Pillow, which is not installed ({exc}); "
                          f"{_INSTALL_HINT}") from None
    return Image


def load_image(path) -> np.ndarray:
    """The image at ``path`` as float32 (3, H, W), RGB, values 0..255
    (greyscale, palette and RGBA images are converted to RGB). Decodes the
    whole file, so a truncated one raises :class:`ImageLoadError`."""
    Image = import_pillow()
    try:
        with Image.open(path) as img:
            img.load()  # Pillow decodes lazily; force it so truncation shows here
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "not an image"
        raise ImageLoadError(path, exc) from None
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)


def write_class_index(path, classes):
    """Write ``classes`` (class names, in index order) as JSON: an object
    ``{"name": index, ...}``."""
    from deepconv.checkpoint import atomic_write_json  # (it imports the backends)

    classes = _class_names(classes, "classes")
    atomic_write_json(path, {name: i for i, name in enumerate(classes)})


def read_class_index(path) -> list:
    """The class names, in index order, from a JSON class-index file (an
    object ``{"name": index}`` with indices 0 .. K-1, or a list of names)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, list):
        names = data
    elif isinstance(data, dict):
        indices = sorted(data.values()) if all(isinstance(v, int) for v in data.values()) else None
        if indices != list(range(len(data))):
            raise ValueError(f"{path}: expected class indices 0 .. {len(data) - 1}, each once")
        names = sorted(data, key=data.get)
    else:
        raise ValueError(f"{path}: expected a JSON object {{name: index}} or a list of names")
    return _class_names(names, path)


def _class_names(names, where) -> list:
    names = list(names)
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{where}: expected distinct class names (strings)")
    return names


class ImageFolder:
    """Images under ``root`` in the ImageNet layout: each sub-folder is a
    class, each ``.jpg`` / ``.jpeg`` / ``.png`` file in it (any case) an
    image of that class. Other files are ignored; files and folders are
    taken in sorted order, so the sample order is the same everywhere.

    Classes: sorted folder names, indices 0 .. K-1, unless ``class_index``
    (a list of names, or a JSON file: :func:`read_class_index`) fixes the
    names and their order, e.g. the training set's, so that a validation folder gets the
    same indices (a folder not in the file is an error; classes without a
    folder just have no images). :meth:`save_class_index` writes it.

    ``dataset[i]`` is ``(image, label)``: the decoded image (float32 (3, H,
    W), RGB, 0..255) passed through ``transform(image, rng)`` with ``rng =``
    :func:`~deepconv.data.transforms.sample_rng` ``(seed, epoch, i)`` (set
    the epoch with :meth:`set_epoch`), so an image's augmentation is fixed
    by seed, epoch and index. :meth:`batch` stacks several (the transform
    must then give every image the same shape, e.g. end with a crop), which
    is what :class:`~deepconv.data.DataLoader` calls; the loader does not
    know the dataset's epoch, so call ``dataset.set_epoch(e)`` alongside
    ``loader.set_epoch(e)`` for fresh augmentation every epoch.

    Bad files (unreadable, truncated, not an image): ``verify=True`` decodes
    every file once here; ``on_error="raise"`` raises
    :class:`ImageLoadError` naming the first bad file, ``"skip"`` drops
    them with one warning listing every path (kept in ``self.skipped``).
    With ``verify=False`` (large sets) a bad file shows up when loaded:
    ``"raise"`` raises there; ``"skip"`` makes :meth:`batch` leave it out
    (a smaller batch) with a warning.
    """

    def __init__(self, root, transform=None, *, class_index=None, on_error="raise", verify=True,
                 seed=0, extensions=IMAGE_EXTENSIONS, name=None):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise ValueError(f"root: expected a directory, got {root!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform: expected a callable or None, got {type(transform).__name__}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error: expected one of {ON_ERROR}, got {on_error!r}")
        self.root = root
        self.transform = transform
        self.on_error = on_error
        self.seed = check_int(seed, "seed", 0)
        self.epoch = 0
        self.extensions = tuple(e.lower() for e in extensions)
        self.name = os.path.basename(os.path.normpath(root)) if name is None else str(name)
        folders = sorted(e.name for e in os.scandir(root) if e.is_dir())
        if class_index is None:
            self.classes = folders
        elif isinstance(class_index, (list, tuple)):
            self.classes = _class_names(class_index, "class_index")
        else:
            self.classes = read_class_index(class_index)
            unknown = [f for f in folders if f not in self.classes]
            if unknown:
                raise ValueError(f"class_index: {class_index} has no class for the folders {unknown}")
        if not self.classes:
            raise ValueError(f"root: {root!r} has no class sub-folders")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = self._scan(folders)
        self.skipped = []
        if check_bool(verify, "verify"):
            self._verify()

    def _scan(self, folders) -> list:
        samples = []
        for folder in folders:
            base = os.path.join(self.root, folder)
            for entry in sorted(os.scandir(base), key=lambda e: e.name):
                if entry.is_file() and entry.name.lower().endswith(self.extensions):
                    samples.append((entry.path, self.class_to_idx[folder]))
        return samples

    def _verify(self):
        bad = []
        for path, _ in self.samples:
            try:
                load_image(path)
            except ImageLoadError as exc:
                if self.on_error == "raise":
                    raise
                bad.append(exc)
        self._skip(bad, remove=True)

    def _skip(self, errors, remove):
        """Warn about ``errors``; ``remove`` drops their samples (only while
        building: during an epoch the indices must keep their meaning)."""
        if not errors:
            return
        if remove:
            paths = {e.path for e in errors}
            self.samples = [s for s in self.samples if s[0] not in paths]
        self.skipped += [e.path for e in errors if e.path not in self.skipped]
        listing = "\n".join(f"  {e.path}: {e.reason}" for e in errors)
        warnings.warn(f"ImageFolder({self.root!r}): skipped {len(errors)} unreadable image(s):\n"
                      f"{listing}", RuntimeWarning, stacklevel=3)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def set_epoch(self, epoch):
        """The epoch whose augmentation ``dataset[i]`` draws."""
        self.epoch = check_int(epoch, "epoch", 0)

    def save_class_index(self, path):
        """Write this dataset's class index as JSON (:func:`write_class_index`)."""
        write_class_index(path, self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index) -> np.ndarray:
        """Image ``index`` decoded, without the transform."""
        return load_image(self.samples[index][0])

    def __getitem__(self, index):
        index = check_int(index, "index", -len(self))
        if index >= len(self):
            raise IndexError(f"index: {index} is out of range for {len(self)} images")
        index %= len(self)
        image = self.load(index)
        if self.transform is not None:
            image = self.transform(image, sample_rng(self.seed, self.epoch, index))
        return np.ascontiguousarray(image, dtype=np.float32), self.samples[index][1]

    def batch(self, indices):
        """``(images (n, 3, H, W) float32, labels (n,) int64)`` of ``indices``;
        with ``on_error="skip"`` bad files are left out (n smaller)."""
        images, labels, bad = [], [], []
        for i in np.asarray(indices, dtype=np.int64):
            try:
                image, label = self[int(i)]
            except ImageLoadError as exc:
                if self.on_error == "raise":
                    raise
                bad.append(exc)
                continue
            images.append(image)
            labels.append(label)
        self._skip(bad, remove=False)
        if not images:
            return np.zeros((0, 3, 0, 0), np.float32), np.zeros(0, np.int64)
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ValueError(f"transform: images of one batch must have one shape, got {sorted(shapes)}"
                             " (end the transform with a crop)")
        return np.stack(images), np.asarray(labels, dtype=np.int64)

    def __repr__(self) -> str:
        return f"ImageFolder({self.root!r}, {len(self)} images, {self.num_classes} classes)"
