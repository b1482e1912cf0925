"""UNet shapes for every dataset, the null label, and refused configurations."""

import dataclasses

import pytest
import torch

from toydiff.config import ModelConfig, preset
from toydiff.errors import UserError
from toydiff.unet import UNet


@pytest.mark.parametrize("dataset, shape", [("digits", (1, 8, 8)), ("mnist", (1, 28, 28)),
                                            ("fashion-mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))])
def test_output_has_the_input_shape_for_each_dataset_preset(dataset, shape):
    cfg = dataclasses.replace(preset(dataset).model, width=16, groups=4, num_res_blocks=1)   # preset levels, tiny
    model = UNet(cfg)
    x = torch.randn(3, *shape)
    y = torch.tensor([0, 5, cfg.num_classes])                # the last is the null label
    assert model(x, torch.tensor([0, 500, 999]), y).shape == x.shape


def test_labels_condition_the_prediction(tiny_model):
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 10])
    a, b = tiny_model(x, t, torch.tensor([1, 1])), tiny_model(x, t, torch.tensor([1, 10]))
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_preset_parameter_counts_are_reported():
    assert 100_000 < UNet(preset("digits").model).num_parameters() < 5_000_000


@pytest.mark.parametrize("change, match", [
    (dict(image_size=30, channel_mult=(1, 2, 2)), "not divisible by 4"),
    (dict(width=30), "GroupNorm"),
    (dict(num_res_blocks=0), "must lie in 1..16"),
])
def test_shapes_the_unet_cannot_handle_are_user_errors(change, match):
    with pytest.raises(UserError, match=match):
        UNet(dataclasses.replace(preset("digits").model, **change))


@pytest.mark.parametrize("size, patch, mult", [(28, 2, (1, 2)), (32, 4, (1, 2)), (8, 2, (1,))])
def test_a_pixel_unshuffle_stem_keeps_the_image_shape(size, patch, mult):
    """patch p: the net runs on (C p^2, H/p, W/p) and returns (C, H, W); p = 2 has fewer positions per conv."""
    cfg = ModelConfig(in_channels=3, image_size=size, num_classes=10, width=16, channel_mult=mult,
                      num_res_blocks=1, groups=4, patch=patch)
    model = UNet(cfg)
    x = torch.randn(2, 3, size, size)
    assert model(x, torch.tensor([0, 5]), torch.tensor([1, 10])).shape == x.shape
    assert model.conv_in.in_channels == 3 * patch ** 2


def test_a_patch_the_image_cannot_split_into_is_refused():
    with pytest.raises(UserError, match="not divisible by 8"):
        UNet(ModelConfig(image_size=28, channel_mult=(1, 2), patch=4))
