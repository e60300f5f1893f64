"""A one-convolution LoRA layer whose backward pass skips the frozen weight's gradient.

The ``"merged"`` forward form of :class:`~loragui.engine.lora.LoRALayer` runs a
single convolution with ``W' = W + s·B·A``, but autograd then computes the full
weight gradient ``dL/dW'`` (as costly as the forward pass) only to project it
onto ``A`` and ``B``. :class:`FusedLoRAConv` keeps the single fast forward and
computes the backward pass directly:

    dx = conv_input_grad(dy, W')              (needed anyway, full cost)
    dB = s · weight_grad_1x1(dy, A * x)       (thin: r channels)
    dA = weight_grad(x, s · Bᵀ dy)            (thin: r channels)

so a step costs about two full convolutions instead of three. Training on the
CPU uses it for layers of 64 channels or more (the ``"auto"`` form that
:func:`~loragui.engine.devices.default_forward_mode` picks there: for narrower
layers the thin convolutions cost more than the weight gradient they avoid); it
runs on any device. Plain ``Conv2d`` with ``groups == 1`` and zero padding only; other
layers use the merged form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_conv_backward = torch.ops.aten.convolution_backward


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class FusedLoRAConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling, stride, padding, dilation):
        dtype = _compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            xc = x.to(dtype)
            ac, bc = lora_a.to(dtype), lora_b.to(dtype)
            delta = torch.einsum("or,rikl->oikl", lora_b[:, :, 0, 0].float(), lora_a.float())
            w = (weight.float() + scaling * delta).to(dtype)
            bias_c = bias.to(dtype) if bias is not None else None
            y = F.conv2d(xc, w, bias_c, stride, padding, dilation)
        ctx.save_for_backward(xc, w, ac, bc)
        ctx.conf = (scaling, stride, padding, dilation, x.dtype, bias is not None,
                    bias.requires_grad if bias is not None else False, x.requires_grad)
        ctx.dtypes = (lora_a.dtype, lora_b.dtype, bias.dtype if bias is not None else None)
        return y

    @staticmethod
    def backward(ctx, dy):
        xc, w, ac, bc = ctx.saved_tensors
        scaling, stride, padding, dilation, x_dtype, has_bias, bias_grad, x_grad = ctx.conf
        a_dtype, b_dtype, bias_dtype = ctx.dtypes
        dy = dy.to(w.dtype)
        with torch.autocast(dy.device.type, enabled=False):
            dx, _, dbias = _conv_backward(
                dy, xc, w, [w.shape[0]] if has_bias else None, list(stride), list(padding),
                list(dilation), False, [0, 0], 1, [x_grad, False, has_bias and bias_grad])
            u = F.conv2d(xc, ac, None, stride, padding, dilation)  # (N, r, H', W')
            _, db, _ = _conv_backward(dy, u, bc, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                                      [False, True, False])
            v = F.conv2d(dy, bc.transpose(0, 1)) * scaling  # (N, r, H', W') = s·Bᵀ dy
            _, da, _ = _conv_backward(v, xc, ac, None, list(stride), list(padding), list(dilation),
                                      False, [0, 0], 1, [False, True, False])
        return (dx.to(x_dtype) if dx is not None else None, None,
                dbias.to(bias_dtype) if dbias is not None else None,
                da.to(a_dtype), (db * scaling).to(b_dtype), None, None, None, None)

