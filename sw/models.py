"""Built-in models: the reference article's CNN (the CLI's default) and the digits models."""

from functools import partial

import torch
from torch import nn

__all__ = ["ReferenceCNN", "LeNet300", "build_model", "example_inputs", "MODELS", "INPUT_SHAPES"]


class ReferenceCNN(nn.Module):
    """The reference article's CNN for 32x32x3 input (1,070,794 parameters).

    Conv 3->32 3x3 pad 1, ReLU, MaxPool 2; Conv 32->64 3x3 pad 1, ReLU, MaxPool 2;
    Linear 4096->256, ReLU; Linear 256->10.
    """

    def __init__(self, in_channels=3, num_classes=10, image_size=32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 256), nn.ReLU(), nn.Linear(256, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNet300(nn.Module):
    """A LeNet-300-100-style MLP (Han et al. 2015) for 8x8x1 digits: 64-300-100-10, ReLU."""

    def __init__(self, in_features=64, num_classes=10):
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def forward(self, x):
        return self.classifier(x)


# "cnn-digits" is the reference CNN unchanged except for its input: one channel and an 8x8 image,
# so the two 2x2 poolings leave 64 channels of 2x2 and the first linear layer is 256->256.
MODELS = {"cnn": ReferenceCNN, "mlp-digits": LeNet300,
          "cnn-digits": partial(ReferenceCNN, in_channels=1, image_size=8)}


def build_model(name="cnn", seed=0):
    """A built-in model with seeded initial weights."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"model must be one of {sorted(MODELS)}, not {name!r}") from None
    torch.manual_seed(seed)
    return cls()


#: Input shape (without the batch dimension) of each built-in model.
INPUT_SHAPES = {"cnn": (3, 32, 32), "mlp-digits": (64,), "cnn-digits": (1, 8, 8)}


def example_inputs(name="cnn", batch=1):
    """A random input batch of the right shape for a built-in model (for tracing)."""
    return torch.randn(batch, *INPUT_SHAPES[name])


def calibration_inputs(name="cnn", seed=0, batch=64):
    """Calibration batches for a built-in model: the digits models get the first 256 images of
    their training split (four batches of 64), the reference CNN seeded random images."""
    if name in ("mlp-digits", "cnn-digits"):
        from .data import load_digits_splits
        images = load_digits_splits(seed).train.tensors[0][:256]
        if name == "mlp-digits":
            images = images.reshape(images.shape[0], -1)
        return list(images.split(batch))
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, *INPUT_SHAPES[name], generator=g)]


def _factory(spec):
    """``package.module:factory`` -> the callable (a clear error if it does not resolve)."""
    import importlib
    module, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {spec!r}: {exc}") from None
    if not callable(obj):
        raise ValueError(f"{spec!r} is not callable")
    return obj


def load_model(spec, *, arch=None, seed=0):
    """The model a user names: a built-in name (:data:`MODELS`), ``package.module:factory``, or a
    file written by ``torch.save`` holding a whole module or a state dict (then ``arch``, a
    ``package.module:factory``, builds the module it loads into; a state dict pruned with
    ``torch.nn.utils.prune`` -- ``weight_orig`` / ``weight_mask`` -- loads with its masks).
    Returns ``(model, name)``; bad files get a clear error."""
    import re
    from pathlib import Path

    from torch import nn
    if spec in MODELS:
        return build_model(spec, seed=seed), spec
    path = Path(spec)
    if not path.exists():
        if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec):
            model = _factory(spec)()
            if not isinstance(model, nn.Module):
                raise ValueError(f"{spec!r} returned a {type(model).__name__}, not a torch module")
            return model, spec
        raise ValueError(f"model must be a built-in one ({', '.join(sorted(MODELS))}), "
                         f"package.module:factory, or a file saved with torch.save; "
                         f"{spec!r} is none of these")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:   # a truncated or foreign file: pickle, zip or torch errors
        raise ValueError(f"{path} is not a file torch.save wrote ({type(exc).__name__}: "
                         f"{exc})") from None
    if isinstance(obj, nn.Module):
        return obj, path.stem
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a module or a state dict")
    if arch is None:
        raise ValueError(f"{path} holds a state dict: name the module it belongs to with "
                         f"--arch package.module:factory (or a built-in model)")
    model = build_model(arch, seed=seed) if arch in MODELS else _factory(arch)()
    from torch.nn.utils import prune
    for name, module in model.named_modules():
        for param in ("weight", "bias"):
            if f"{name + '.' if name else ''}{param}_mask" in obj:
                prune.identity(module, param)
    try:
        model.load_state_dict(obj)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit {arch}: {str(exc).splitlines()[0]}") from None
    return model, path.stem
