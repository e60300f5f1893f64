"""LoRA layers: identity at init, only LoRA trains, exact merge/unmerge, the forward forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loragui.engine.fused import FusedLoRAConv
from loragui.engine.lora import (
    FUSED_MIN_CHANNELS,
    LoRALayer,
    LoRASettings,
    adapter_state_dict,
    inject_lora,
    merge_lora,
    set_extra_trainable,
    set_forward_mode,
    strip_lora,
    unmerge_lora,
)
from loragui.engine.unet import UNet, UNetConfig

LAYERS = [
    (lambda: nn.Conv2d(8, 12, 3, stride=2, padding=1), (2, 8, 17, 19)),
    (lambda: nn.Conv2d(8, 12, 3, padding=2, dilation=2), (2, 8, 16, 16)),
    (lambda: nn.Conv2d(8, 12, 3, padding=1, groups=4), (2, 8, 16, 16)),
    (lambda: nn.Conv2d(8, 12, 5, stride=2, padding=2, dilation=2, groups=2,
                       padding_mode="reflect"), (2, 8, 21, 23)),
    (lambda: nn.Conv2d(8, 12, 1), (2, 8, 7, 7)),
    (lambda: nn.ConvTranspose2d(8, 12, 2, stride=2), (2, 8, 9, 7)),
    (lambda: nn.ConvTranspose2d(8, 12, 3, stride=2, padding=1, output_padding=1, groups=2),
     (2, 8, 9, 7)),
    (lambda: nn.ConvTranspose2d(8, 12, 3, stride=1, padding=2, dilation=2), (2, 8, 9, 7)),
]


def _randomise_b(layer: LoRALayer) -> None:
    nn.init.normal_(layer.lora_B.weight, std=0.5)


@pytest.mark.parametrize("make,shape", LAYERS)
def test_identity_at_init(make, shape):
    torch.manual_seed(0)
    base = make()
    x = torch.randn(shape)
    ref = base(x)
    layer = LoRALayer(base, rank=4, alpha=8)
    assert torch.equal(layer(x), ref)


@pytest.mark.parametrize("make,shape", LAYERS)
def test_merge_unmerge_exact(make, shape):
    torch.manual_seed(1)
    layer = LoRALayer(make(), rank=4, alpha=8)
    _randomise_b(layer)
    x = torch.randn(shape)
    original_weight = layer.base_layer.weight.detach().clone()
    unmerged = layer(x)
    layer.merge()
    merged = layer(x)
    layer.unmerge()
    again = layer(x)
    scale = unmerged.abs().max()
    assert (merged - unmerged).abs().max() <= 1e-5 * scale
    assert (again - unmerged).abs().max() <= 1e-5 * scale
    assert torch.allclose(layer.base_layer.weight, original_weight, rtol=1e-5, atol=1e-6)
    # the update really changes the output (otherwise the checks above prove nothing)
    layer.lora_B.weight.data.zero_()
    assert (layer(x) - unmerged).abs().max() > 1e-3 * scale


@pytest.mark.parametrize("make,shape", LAYERS)
def test_merged_forward_form_matches_branch_form(make, shape):
    torch.manual_seed(2)
    layer = LoRALayer(make(), rank=4, alpha=8)
    _randomise_b(layer)
    x = torch.randn(shape, requires_grad=True)
    grads = {}
    outs = {}
    for mode in ("branch", "merged", "fused", "auto"):
        layer.forward_mode = mode
        layer.zero_grad()
        x.grad = None
        y = layer(x)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        outs[mode] = y.detach()
        grads[mode] = (layer.lora_A.weight.grad.clone(), layer.lora_B.weight.grad.clone(),
                       x.grad.clone())
    for mode in ("merged", "fused", "auto"):
        assert torch.allclose(outs["branch"], outs[mode], rtol=1e-5, atol=1e-5)
        for a, b in zip(grads["branch"], grads[mode], strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert layer.base_layer.weight.grad is None


@pytest.mark.parametrize("channels,fused", [(FUSED_MIN_CHANNELS // 4, False),
                                            (FUSED_MIN_CHANNELS, True)])
def test_auto_form_fuses_wide_layers_only(monkeypatch, channels, fused):
    calls = []
    real = FusedLoRAConv.apply
    monkeypatch.setattr(FusedLoRAConv, "apply", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(4)
    layer = LoRALayer(nn.Conv2d(channels, channels, 3, padding=1), rank=4, alpha=8)
    _randomise_b(layer)
    x = torch.randn(1, channels, 6, 6, requires_grad=True)
    outs = []
    for mode in ("branch", "auto"):
        layer.forward_mode = mode
        outs.append(layer(x))
    assert bool(calls) == fused
    assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_fused_form_trains_bias_like_branch_form():
    torch.manual_seed(3)
    grads = []
    for mode in ("branch", "fused"):
        torch.manual_seed(3)
        layer = LoRALayer(nn.Conv2d(6, 10, 3, stride=2, padding=1), rank=3, alpha=6)
        _randomise_b(layer)
        layer.base_layer.bias.requires_grad_(True)
        layer.forward_mode = mode
        x = torch.randn(2, 6, 12, 12)
        layer(x).square().sum().backward()
        grads.append(layer.base_layer.bias.grad.clone())
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_rank_rounded_up_to_groups_and_rslora():
    layer = LoRALayer(nn.Conv2d(8, 8, 3, groups=4), rank=2, alpha=4, rslora=True)
    assert layer.rank == 4
    assert layer.scaling == pytest.approx(4 / 2)


def test_rejects_other_layers():
    with pytest.raises(TypeError):
        LoRALayer(nn.Linear(3, 3), rank=2, alpha=2)
    with pytest.raises(ValueError):
        LoRALayer(nn.Conv2d(3, 3, 1), rank=0, alpha=2)


def _tiny_unet():
    torch.manual_seed(0)
    return UNet(UNetConfig(in_channels=3, out_channels=1, width=4, depth=2))


def test_unet_any_size_and_param_count():
    model = _tiny_unet()
    for h, w in [(16, 16), (17, 23), (5, 3), (1, 1)]:
        assert model.forward_any_size(torch.randn(1, 3, h, w)).shape == (1, 1, h, w)
    seed = UNet(UNetConfig(width=64, depth=2))
    assert len(list(seed.down)) == 2 and len(list(seed.up)) == 2


def test_injected_unet_identity_then_only_lora_trains():
    model = _tiny_unet()
    x = torch.rand(2, 3, 16, 16)
    ref = model(x).detach()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = inject_lora(model, LoRASettings(rank=2, alpha=4))
    assert "up.0" in names and "head" in names and "down.0.conv1" in names
    assert torch.equal(model(x), ref)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    after = model.state_dict()
    changed = {k for k in after if ".lora_" not in k and not torch.equal(after[k], before[
        k.replace(".base_layer", "")])}
    assert changed == set()
    lora_changed = [k for k in after if ".lora_B" in k and after[k].abs().sum() > 0]
    assert lora_changed, "LoRA B weights did not move"
    for name, p in model.named_parameters():
        assert p.requires_grad == (".lora_" in name)


def test_biases_and_head_trainable_option():
    model = _tiny_unet()
    inject_lora(model, LoRASettings(rank=2, alpha=4, exclude=["head"]))
    names = set_extra_trainable(model, biases=True, modules=["head"])
    assert "head.weight" in names and "head.bias" in names
    assert "down.0.conv1.base_layer.bias" in names
    assert not any(n.endswith("base_layer.weight") for n in names)
    state = adapter_state_dict(model)
    assert set(names) <= set(state)


def test_whole_model_merge_and_strip():
    model = _tiny_unet()
    inject_lora(model, LoRASettings(rank=3, alpha=6, targets=["down.*", "up.*", "dec.1.*"]))
    for name, p in model.named_parameters():
        if ".lora_B" in name:
            nn.init.normal_(p, std=0.3)
    x = torch.rand(2, 3, 16, 16)
    ref = model(x).detach()
    set_forward_mode(model, "merged")
    assert torch.allclose(model(x), ref, rtol=1e-5, atol=1e-6)
    set_forward_mode(model, "branch")
    merge_lora(model)
    assert torch.allclose(model(x), ref, rtol=1e-5, atol=1e-6)
    unmerge_lora(model)
    assert torch.allclose(model(x), ref, rtol=1e-5, atol=1e-6)
    plain = strip_lora(model)
    assert not any(".lora_" in k for k in plain.state_dict())
    assert torch.allclose(plain(x), ref, rtol=1e-5, atol=1e-6)
    assert set(plain.state_dict()) == set(_tiny_unet().state_dict())

