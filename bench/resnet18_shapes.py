"""Weight shapes of ResNet-18 (ImageNet), written by hand: no torchvision, nothing downloaded."""

__all__ = ["RESNET18_WEIGHT_SHAPES"]


def _stage(cin, cout, stride_block):
    shapes = [(cout, cin, 3, 3), (cout, cout, 3, 3)]
    if stride_block:
        shapes.append((cout, cin, 1, 1))          # downsample shortcut
    shapes += [(cout, cout, 3, 3), (cout, cout, 3, 3)]
    return shapes


RESNET18_WEIGHT_SHAPES = (
    [(64, 3, 7, 7)]
    + _stage(64, 64, False)
    + _stage(64, 128, True)
    + _stage(128, 256, True)
    + _stage(256, 512, True)
    + [(1000, 512)]
)
