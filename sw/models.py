"""Built-in models: the reference article's CNN (the CLI's default)."""

import torch
from torch import nn

__all__ = ["ReferenceCNN", "build_model", "MODELS"]


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


MODELS = {"cnn": ReferenceCNN}


def build_model(name="cnn", seed=0):
    """A built-in model with seeded initial weights."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"model must be one of {sorted(MODELS)}, not {name!r}") from None
    torch.manual_seed(seed)
    return cls()
