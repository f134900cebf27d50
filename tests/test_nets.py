import numpy as np
import pytest
import torch

from aimfair_plugin.nets import ResNet, block_of, load_checkpoint, read_state_dict


def torchvision_resnet18_layout(num_classes=1000):
    """Parameter names and shapes of torchvision.models.resnet18, written out from its definition."""
    layout = {"conv1.weight": (64, 3, 7, 7), "bn1.weight": (64,), "bn1.bias": (64,)}
    inplanes = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}."
            cin = inplanes if block == 0 else planes
            layout[prefix + "conv1.weight"] = (planes, cin, 3, 3)
            layout[prefix + "bn1.weight"] = layout[prefix + "bn1.bias"] = (planes,)
            layout[prefix + "conv2.weight"] = (planes, planes, 3, 3)
            layout[prefix + "bn2.weight"] = layout[prefix + "bn2.bias"] = (planes,)
            if block == 0 and stage > 1:
                layout[prefix + "downsample.0.weight"] = (planes, cin, 1, 1)
                layout[prefix + "downsample.1.weight"] = layout[prefix + "downsample.1.bias"] = (planes,)
        inplanes = planes
    layout["fc.weight"], layout["fc.bias"] = (num_classes, 512), (num_classes,)
    return layout


def test_resnet18_matches_torchvision_layout():
    net = ResNet("resnet18", num_outputs=1000)
    params = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert len(params) == 62
    assert params == torchvision_resnet18_layout()
    assert sum(p.numel() for p in net.parameters()) == 11_689_512  # torchvision's count
    buffers = {name for name, _ in net.named_buffers()}
    assert "layer2.0.downsample.1.running_mean" in buffers


@pytest.mark.parametrize("arch, n_tensors, n_params", [("resnet34", 110, 21_797_672), ("resnet50", 161, 25_557_032)])
def test_deeper_resnets_match_torchvision_counts(arch, n_tensors, n_params):
    net = ResNet(arch, num_outputs=1000)
    assert len(list(net.parameters())) == n_tensors
    assert sum(p.numel() for p in net.parameters()) == n_params


def test_width_scales_channels_and_forward_shapes():
    net = ResNet("resnet18", num_outputs=2, width=16)
    assert net.fc.weight.shape == (2, 128)
    assert net(torch.rand(3, 3, 32, 32)).shape == (3, 2)
    cifar = ResNet("resnet18", num_outputs=2, width=8, stem="cifar", in_channels=1)
    assert cifar.conv1.weight.shape == (8, 1, 3, 3)
    assert cifar(torch.rand(2, 1, 16, 16)).shape == (2, 2)


def test_block_of():
    assert [block_of(n) for n in ("conv1.weight", "bn1.bias", "layer3.1.conv2.weight", "fc.bias")] == [
        "stem", "stem", "layer3", "fc"]


def test_checkpoint_round_trip_replaces_mismatched_head(tmp_path):
    source = ResNet("resnet18", num_outputs=1000, width=16)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in source.state_dict().items()}}, path)
    target = ResNet("resnet18", num_outputs=2, width=16)
    head = target.fc.weight.detach().clone()
    assert load_checkpoint(target, path) == ["fc.weight", "fc.bias"]
    torch.testing.assert_close(target.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    torch.testing.assert_close(target.fc.weight, head)
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(ResNet("resnet18", num_outputs=2, width=8), path)


def test_checkpoint_loading_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": np.random.RandomState}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "none.pth")
