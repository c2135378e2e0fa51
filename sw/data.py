"""The digits data set (scikit-learn's copy of the UCI 8x8 handwritten digits), split the same way
every time.

scikit-learn ships the 1,797 images inside its wheel, so nothing is downloaded. Pixels (0 to 16)
are scaled to [0, 1] and shaped ``(N, 1, 8, 8)``: the convolutional models read them as one-channel
images, the MLP flattens them to 64 inputs.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["DigitsSplits", "load_digits_splits"]


@dataclass
class DigitsSplits:
    """Train, validation (held out for sweeps and model choices) and test splits."""

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    seed: int

    def sizes(self):
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a fraction between 0 and 1 (exclusive), not {value!r}")


def load_digits_splits(seed=0, *, test_size=0.25, val_size=0.15):
    """Load the digits and split them, stratified by class, with a fixed seed.

    Parameters
    ----------
    seed : int
        Seed of the split; the same seed gives the same split on every machine.
    test_size, val_size : float
        Fractions of all 1,797 images for the test and the validation split; the rest trains.

    Returns
    -------
    DigitsSplits
        ``float32`` images ``(N, 1, 8, 8)`` in [0, 1] and ``int64`` labels 0 to 9.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    _check_fraction("test_size", test_size)
    _check_fraction("val_size", val_size)
    if test_size + val_size >= 1.0:
        raise ValueError(f"test_size + val_size must leave images to train on, "
                         f"not {test_size!r} + {val_size!r}")
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_size / (1.0 - test_size), random_state=seed,
        stratify=y_rest)

    def dataset(xs, ys):
        return TensorDataset(torch.from_numpy(xs), torch.from_numpy(ys))
    return DigitsSplits(train=dataset(x_train, y_train), val=dataset(x_val, y_val),
                        test=dataset(x_test, y_test), seed=seed)
