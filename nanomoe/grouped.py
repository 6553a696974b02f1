"""Grouped matrix multiply: consecutive slices of rows, each times its own expert's matrix.

``grouped_mm(a, b, ends)``: rows ``ends[e-1]:ends[e]`` of ``a`` (M, K) times ``b[e]``
(E, K, N), giving (M, N). It is one custom op with its own shape function and backward, so
``torch.compile`` sees a single opaque kernel with static shapes: it traces the MoE in one
graph in any dtype and never recompiles when the routing moves rows between experts.
(PyTorch's own ``F.grouped_mm`` traces only in bf16.) Inside, it calls
``torch.nn.functional.grouped_mm``, a grouped GEMM on CUDA and a loop of GEMMs on the CPU,
with no device-to-host sync; where that kernel cannot take the input (fp32 on CUDA, a GPU
older than Hopper), a loop over the experts does, reading the slice ends on the host.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from nanomoe.device import TORCH

# The grouped kernels want 16-byte-aligned row strides: widths in multiples of 8 elements.
ALIGN = 8


_loop_forced = False


@contextlib.contextmanager
def expert_loop():
    """Within it, dispatch with the loop over experts even where the grouped kernel applies:
    the other side of ``pipeline.bench --ab``, and of the tests that pin the two equal."""
    global _loop_forced
    before, _loop_forced = _loop_forced, True
    try:
        yield
    finally:
        _loop_forced = before


def _native_ok(a: torch.Tensor) -> bool:
    """Whether ``F.grouped_mm`` takes ``a``: bf16 on Hopper or newer GPUs (torch >= 2.8), any
    float dtype on the CPU (its fallback, torch >= 2.9)."""
    if _loop_forced:
        return False
    if a.device.type == "cuda":
        sm90 = torch.cuda.get_device_capability(a.device) >= (9, 0)
        return TORCH >= (2, 8) and a.dtype == torch.bfloat16 and sm90
    return TORCH >= (2, 9) and a.device.type == "cpu"


def _pad_last(t: torch.Tensor, width: int) -> torch.Tensor:
    extra = -width % ALIGN
    return F.pad(t, (0, extra)) if extra else t


def _forward(a: torch.Tensor, b: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """(M, K) x (E, K, N) -> (M, N)."""
    M, K = a.shape
    N = b.shape[2]
    if not _native_ok(a):
        out, start = a.new_empty(M, N), 0
        for e, end in enumerate(ends.tolist()):
            out[start:end] = a[start:end] @ b[e]
            start = end
        return out
    if K % ALIGN or N % ALIGN:  # zero padding adds exact zeros to every product
        a = _pad_last(a, K)
        b = F.pad(b, (0, -N % ALIGN, 0, -K % ALIGN))
    return F.grouped_mm(a, b, offs=ends)[:, :N]


def _weight_grad(a: torch.Tensor, g: torch.Tensor, ends: torch.Tensor, E: int) -> torch.Tensor:
    """(M, K), (M, N) -> (E, K, N): each expert's ``a_e.T @ g_e``."""
    M, K = a.shape
    N = g.shape[1]
    if not _native_ok(a):
        out, start = a.new_zeros(E, K, N), 0
        for e, end in enumerate(ends.tolist()):
            out[e] = a[start:end].T @ g[start:end]
            start = end
        return out
    a, g = _pad_last(a, K), _pad_last(g, N)
    return F.grouped_mm(a.T, g, offs=ends)[:, :K, :N]


@torch.library.custom_op("nanomoe::grouped_mm", mutates_args=())
def _grouped_mm(a: torch.Tensor, b: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    return _forward(a, b, ends)


@_grouped_mm.register_fake
def _(a: torch.Tensor, b: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    return a.new_empty(a.shape[0], b.shape[2])


@torch.library.custom_op("nanomoe::grouped_mm_weight_grad", mutates_args=())
def _grouped_wgrad(a: torch.Tensor, g: torch.Tensor, ends: torch.Tensor, E: int) -> torch.Tensor:
    return _weight_grad(a, g, ends, E)


@_grouped_wgrad.register_fake
def _(a: torch.Tensor, g: torch.Tensor, ends: torch.Tensor, E: int) -> torch.Tensor:
    return a.new_empty(E, a.shape[1], g.shape[1])


def _setup_context(ctx, inputs, output) -> None:
    a, b, ends = inputs
    ctx.save_for_backward(a, b, ends)


def _backward(ctx, grad: torch.Tensor):
    a, b, ends = ctx.saved_tensors
    grad_a = _grouped_mm(grad.contiguous(), b.transpose(1, 2).contiguous(), ends)
    grad_b = _grouped_wgrad(a, grad.contiguous(), ends, b.shape[0])
    return grad_a, grad_b, None


_grouped_mm.register_autograd(_backward, setup_context=_setup_context)


def grouped_mm(a: torch.Tensor, b: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Rows ``ends[e-1]:ends[e]`` of ``a`` (M, K) times ``b[e]`` (E, K, N): (M, N). ``ends``
    is int32, non-decreasing, and its last value is M."""
    return _grouped_mm(a, b, ends)
