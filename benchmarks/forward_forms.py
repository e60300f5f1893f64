"""The LoRA forward forms layer by layer: what each costs per training step, for every
convolution of a base model at the shapes a training step gives it.

For each adapted layer of the base (the bundled small one unless ``--base`` says
otherwise), one LoRALayer wraps the real layer and runs forward and backward at the
input shape the layer sees in a step of ``--batch`` crops of ``--size``², in each
form in turns (the fastest turn kept), with loragui's memory format. Prints the
milliseconds of each form, which form ``"auto"`` (the CPU's default) picks, and the
sums: the evidence for :data:`~loragui.engine.lora.FUSED_MIN_CHANNELS`.

    python benchmarks/forward_forms.py --device cpu --size 128 --batch 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import sync
from loragui.engine.basemodel import load_model, resolve_base
from loragui.engine.devices import resolve_device
from loragui.engine.lora import LoRALayer

FORMS = ("branch", "merged", "fused", "auto")


def layer_inputs(model: torch.nn.Module, batch: int, size: int, channels: int
                 ) -> dict[str, tuple[torch.nn.Module, tuple[int, ...]]]:
    """Each convolution of ``model`` with the input shape a forward pass gives it."""
    seen: dict[str, tuple[torch.nn.Module, tuple[int, ...]]] = {}
    hooks = [m.register_forward_hook(
        lambda mod, args, out, name=name: seen.setdefault(name, (mod, tuple(args[0].shape)))
        and None)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    with torch.no_grad():
        model(torch.rand(batch, channels, size, size))
    for h in hooks:
        h.remove()
    return seen


def time_form(layer: LoRALayer, x: torch.Tensor, form: str, reps: int, device) -> float:
    layer.forward_mode = form
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        y = layer(x)
        y.backward(torch.ones_like(y))
    sync(device)
    return (time.perf_counter() - t0) / reps * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--base", default=None)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3, help="steps per turn")
    ap.add_argument("--turns", type=int, default=5, help="turns per form; the fastest is kept")
    args = ap.parse_args()
    device = resolve_device(args.device)
    base, info = load_model(resolve_base(args.base, device_type=device.type))
    channels = base.config.to_dict().get("in_channels", 3)
    cl = device.type != "mps"
    totals = dict.fromkeys(FORMS, 0.0)
    print(f"device {device}; {args.size}² crops, batch {args.batch}, rank {args.rank}; "
          f"ms per forward + backward, fastest of {args.turns} turns of {args.reps}\n")
    print("| layer | kind | in | out | input | " + " | ".join(FORMS) + " | auto runs |")
    print("|---|---|---|---|---|" + "---|" * (len(FORMS) + 1))
    for name, (module, shape) in layer_inputs(base, args.batch, args.size, channels).items():
        layer = LoRALayer(module, args.rank, 2.0 * args.rank).to(device)
        torch.nn.init.normal_(layer.lora_B.weight, std=0.01)  # a trained adapter's B is not 0
        x = torch.rand(shape, device=device)
        if cl:
            layer.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        best = dict.fromkeys(FORMS, float("inf"))
        for _ in range(args.turns):  # in turns: drifting machine speed hits every form alike
            for form in FORMS:
                best[form] = min(best[form], time_form(layer, x, form, args.reps, device))
        picked = "fused" if layer._fused_pays and layer._fused_ok else "merged"
        for form in FORMS:
            totals[form] += best[form]
        print(f"| {name} | {type(module).__name__} | {module.in_channels} | "
              f"{module.out_channels} | {shape[2]}×{shape[3]} | "
              + " | ".join(f"{best[f]:.1f}" for f in FORMS) + f" | {picked} |", flush=True)
    print("| **sum** | | | | | " + " | ".join(f"**{totals[f]:.1f}**" for f in FORMS) + " | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
