"""Discrete wavelet transforms in PyWavelets' conventions, and the WNO layer.

``dwt1d``/``idwt1d`` are ``pywt.wavedec``/``pywt.waverec``, ``dwt2d``/``idwt2d`` are
``pywt.wavedec2``/``pywt.waverec2`` (boundary modes 'symmetric' and 'periodization'), batched
over leading dims and differentiable; ``wavelet_conv1d``/``wavelet_conv2d`` are the layer of the
wavelet neural operator (Tripura & Chakraborty, "Wavelet neural operator", CMAME 2023): transform
to ``level``, mix the coarsest coefficients across channels, drop the finer details, invert.
Filters come from ``pywt.Wavelet`` at run time. The references below are the specification of the
compiled kernels (csrc/wavelet_op.h).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dtwin.ops import _library

MODES = ("symmetric", "periodization")

__all__ = [
    "MODES",
    "dwt1d",
    "dwt1d_reference",
    "dwt2d",
    "dwt2d_reference",
    "idwt1d",
    "idwt1d_reference",
    "idwt2d",
    "idwt2d_reference",
    "wavelet_coefficient_size",
    "wavelet_conv1d",
    "wavelet_conv1d_reference",
    "wavelet_conv2d",
    "wavelet_conv2d_reference",
    "wavelet_filters",
]


# --------------------------------------------------------------------------------------------
# wavelets and sizes


#: name -> float64 filters; a plain dict, so that torch.compile reads a loaded wavelet's filters
#: without tracing into PyWavelets (a graph break)
_FILTERS: dict[str, Tensor] = {}


def _filters64(name: str) -> Tensor:
    filters = _FILTERS.get(name) if isinstance(name, str) else None
    if filters is None:
        filters = _load_filters(name)
        _FILTERS[name] = filters
    return filters


def _load_filters(name: str) -> Tensor:
    try:
        import pywt
    except ImportError as exc:  # pragma: no cover - PyWavelets is a dependency
        raise ImportError(
            "dtwin's wavelet ops take their filters from PyWavelets: pip install PyWavelets"
        ) from exc
    if not isinstance(name, str) or name not in pywt.wavelist(kind="discrete"):
        families = ", ".join(pywt.families(short=True))
        raise ValueError(
            f"wavelet: unknown wavelet {name!r}; the discrete families of PyWavelets are {families} "
            "(e.g. 'db4', 'db24', 'sym8', 'coif3'); pywt.wavelist(kind='discrete') lists them all"
        )
    w = pywt.Wavelet(name)
    if not w.orthogonal:
        raise ValueError(
            f"wavelet: {name!r} is not orthogonal; dtwin's transforms take orthogonal wavelets "
            "(db, sym, coif, haar)"
        )
    return torch.tensor([w.dec_lo, w.dec_hi, w.rec_lo, w.rec_hi], dtype=torch.float64)


def wavelet_filters(
    wavelet: str, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> Tensor:
    """Tensor[4, F]: (dec_lo, dec_hi, rec_lo, rec_hi) of ``pywt.Wavelet(wavelet)``."""
    return _filters64(wavelet).to(dtype=dtype, device=device)


def _analysis_len(L: int, F: int, mode: str) -> int:
    return (L + F - 1) // 2 if mode == "symmetric" else (L + 1) // 2


def _synthesis_len(n: int, F: int, mode: str) -> int:
    return 2 * n - F + 2 if mode == "symmetric" else 2 * n


def _max_level(L: int, F: int) -> int:
    level = 0
    while (F - 1) * 2 ** (level + 1) <= L:
        level += 1
    return level


def wavelet_coefficient_size(size: int, wavelet: str, level: int, mode: str = "symmetric") -> int:
    """Number of coarsest coefficients of a length-``size`` signal at ``level`` (the WNO weight size)."""
    F = _filters64(wavelet).shape[1]
    for _ in range(level):
        size = _analysis_len(size, F, mode)
    return size


def check_wavelet_arguments(op: str, wavelet: str, mode: str, length: int, level: int | None) -> int:
    """The level (the maximum when None) after checking wavelet, mode and level for ``op``; ValueError."""
    if mode not in MODES:
        raise ValueError(f"{op}: mode must be one of {MODES} (PyWavelets' names), got {mode!r}")
    F = _filters64(wavelet).shape[1]
    top = _max_level(length, F)
    if level is None:
        level = top
    if not isinstance(level, int) or not 1 <= level <= top:
        raise ValueError(
            f"{op}: level must be an int in [1, {top}] for length {length} and {wavelet!r} "
            f"(filter length {F}, pywt.dwt_max_level), got {level!r}"
        )
    return level


def _check_signal(op: str, x: object, dims: int) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() < dims or x.dtype not in (torch.float32, torch.float64):
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{op}: x must be a float32/float64 Tensor with at least {dims} dims, got {got}")
    return x


# --------------------------------------------------------------------------------------------
# the public functions


def dwt1d(
    x: Tensor, wavelet: str, level: int | None = None, mode: str = "symmetric"
) -> tuple[Tensor, list[Tensor]]:
    """Multilevel 1D DWT along the last dim: ``(cA_level, [cD_level, ..., cD_1])`` as pywt.wavedec.

    Args:
        x: Tensor[..., L], float32/float64.
        wavelet: an orthogonal wavelet name of PyWavelets ('db4', 'sym8', ...).
        level: decomposition levels, 1 to pywt.dwt_max_level (default: the maximum).
        mode: 'symmetric' or 'periodization'.
    """
    _check_signal("dwt1d", x, 1)
    level = check_wavelet_arguments("dwt1d", wavelet, mode, x.shape[-1], level)
    filters = wavelet_filters(wavelet, x.dtype, x.device)
    if _library.use_compiled("dwt1d", x.device):
        out = torch.ops.dtwin.dwt1d(x, filters, level, mode)
    else:
        out = dwt1d_reference(x, filters, level, mode)
    return out[0], list(out[1:])


def idwt1d(
    coeffs: tuple[Tensor, list[Tensor]] | list[Tensor], wavelet: str, mode: str = "symmetric"
) -> Tensor:
    """Inverse of :func:`dwt1d` as pywt.waverec: from ``(cA, [cD_level, ..., cD_1])`` (or the flat
    list ``[cA, cD_level, ..., cD_1]``)."""
    flat = _flatten_1d(coeffs)
    if mode not in MODES:
        raise ValueError(f"idwt1d: mode must be one of {MODES}, got {mode!r}")
    F = _filters64(wavelet).shape[1]
    _check_lengths_1d(flat, F, mode)
    filters = wavelet_filters(wavelet, flat[0].dtype, flat[0].device)
    if _library.use_compiled("idwt1d", flat[0].device):
        return torch.ops.dtwin.idwt1d(flat, filters, mode)
    return idwt1d_reference(flat, filters, mode)


def dwt2d(
    x: Tensor, wavelet: str, level: int | None = None, mode: str = "symmetric"
) -> tuple[Tensor, list[tuple[Tensor, Tensor, Tensor]]]:
    """Multilevel 2D DWT over the last two dims, as pywt.wavedec2:
    ``(cA, [(cH, cV, cD)_level, ..., (cH, cV, cD)_1])``."""
    _check_signal("dwt2d", x, 2)
    level = check_wavelet_arguments("dwt2d", wavelet, mode, min(x.shape[-2:]), level)
    filters = wavelet_filters(wavelet, x.dtype, x.device)
    if _library.use_compiled("dwt2d", x.device):
        out = torch.ops.dtwin.dwt2d(x, filters, level, mode)
    else:
        out = dwt2d_reference(x, filters, level, mode)
    return out[0], [tuple(out[i : i + 3]) for i in range(1, len(out), 3)]


def idwt2d(coeffs, wavelet: str, mode: str = "symmetric") -> Tensor:
    """Inverse of :func:`dwt2d` as pywt.waverec2: from ``(cA, [(cH, cV, cD), ...])``."""
    flat = _flatten_2d(coeffs)
    if mode not in MODES:
        raise ValueError(f"idwt2d: mode must be one of {MODES}, got {mode!r}")
    F = _filters64(wavelet).shape[1]
    _check_shapes_2d(flat, F, mode)
    filters = wavelet_filters(wavelet, flat[0].dtype, flat[0].device)
    if _library.use_compiled("idwt2d", flat[0].device):
        return torch.ops.dtwin.idwt2d(flat, filters, mode)
    return idwt2d_reference(flat, filters, mode)


def _check_conv(op: str, x: object, weight: object, wavelet: str, level: int, mode: str, dims: int) -> None:
    shape_x = "[B, Cin, L]" if dims == 1 else "[B, Cin, H, W]"
    if not isinstance(x, Tensor) or x.dim() != dims + 2 or x.dtype not in (torch.float32, torch.float64):
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{op}: x must be a float32/float64 Tensor{shape_x}, got {got}")
    grid = x.shape[2:]
    level = check_wavelet_arguments(op, wavelet, mode, min(grid), level)
    sizes = [wavelet_coefficient_size(s, wavelet, level, mode) for s in grid]
    bands = 2 if dims == 1 else 4
    expected = (bands, x.shape[1], "Cout", *sizes)
    if (
        not isinstance(weight, Tensor)
        or weight.dim() != dims + 3
        or weight.shape[0] != bands
        or weight.shape[1] != x.shape[1]
        or tuple(weight.shape[3:]) != tuple(sizes)
    ):
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(
            f"{op}: weight must be a Tensor{list(expected)} (bands x Cin x Cout x the coarsest "
            f"coefficients of level {level}), got {got}"
        )
    if weight.dtype != x.dtype or weight.device != x.device:
        raise ValueError(
            f"{op}: weight ({weight.dtype}, {weight.device}) must match x ({x.dtype}, {x.device})"
        )


def wavelet_conv1d(
    x: Tensor, weight: Tensor, wavelet: str = "db24", level: int = 3, mode: str = "symmetric"
) -> Tensor:
    """The 1D WNO layer: Tensor[B, Cin, L] -> Tensor[B, Cout, L].

    y = idwt(cA' , cD_level', zero finer details), with cA' = einsum('bim,iom->bom', cA_level,
    weight[0]) and cD_level' likewise with weight[1].

    Args:
        weight: Tensor[2, Cin, Cout, m], real, m = :func:`wavelet_coefficient_size` (L, wavelet, level, mode).
    """
    _check_conv("wavelet_conv1d", x, weight, wavelet, level, mode, 1)
    filters = wavelet_filters(wavelet, x.dtype, x.device)
    if _library.use_compiled("wavelet_conv1d", x.device):
        return torch.ops.dtwin.wavelet_conv1d(x, weight, filters, level, mode)[0]
    return wavelet_conv1d_reference(x, weight, filters, level, mode)


def wavelet_conv2d(
    x: Tensor, weight: Tensor, wavelet: str = "db4", level: int = 2, mode: str = "symmetric"
) -> Tensor:
    """The 2D WNO layer: Tensor[B, Cin, H, W] -> Tensor[B, Cout, H, W]; mixes the four coarsest
    bands (cA, cH, cV, cD of ``level``) with weight Tensor[4, Cin, Cout, m1, m2]."""
    _check_conv("wavelet_conv2d", x, weight, wavelet, level, mode, 2)
    filters = wavelet_filters(wavelet, x.dtype, x.device)
    if _library.use_compiled("wavelet_conv2d", x.device):
        return torch.ops.dtwin.wavelet_conv2d(x, weight, filters, level, mode)[0]
    return wavelet_conv2d_reference(x, weight, filters, level, mode)


def _flatten_1d(coeffs) -> list[Tensor]:
    if isinstance(coeffs, tuple) and len(coeffs) == 2 and isinstance(coeffs[1], (list, tuple)):
        flat = [coeffs[0], *coeffs[1]]
    else:
        flat = list(coeffs)
    if len(flat) < 2 or not all(isinstance(c, Tensor) for c in flat):
        raise ValueError(
            "idwt1d: coeffs must be (cA, [cD_level, ..., cD_1]) or [cA, cD_level, ..., cD_1] of Tensors"
        )
    return flat


def _check_lengths_1d(flat: list[Tensor], F: int, mode: str) -> None:
    n = flat[0].shape[-1]
    for i, d in enumerate(flat[1:], start=1):
        if d.shape[:-1] != flat[0].shape[:-1] or d.dtype != flat[0].dtype:
            raise ValueError(
                f"idwt1d: coefficient {i} has shape {tuple(d.shape)} and dtype {d.dtype}, the approximation "
                f"{tuple(flat[0].shape)} and {flat[0].dtype}; their leading dims and dtypes must match"
            )
        if n not in (d.shape[-1], d.shape[-1] + 1):
            raise ValueError(
                f"idwt1d: at level {len(flat) - i} the approximation has {n} coefficients but the detail "
                f"{d.shape[-1]}: the lists are not of one decomposition (equal lengths, or the "
                "approximation one longer)"
            )
        if mode == "symmetric" and d.shape[-1] < F // 2:
            raise ValueError(f"idwt1d: {d.shape[-1]} coefficients are too few for a filter of length {F}")
        n = _synthesis_len(d.shape[-1], F, mode)


def _flatten_2d(coeffs) -> list[Tensor]:
    """(cA, [(cH, cV, cD), ...]) as dwt2d returns, [cA, (cH, cV, cD), ...] as pywt.wavedec2 does, or flat."""
    if not isinstance(coeffs, (tuple, list)) or len(coeffs) < 2:
        raise ValueError("idwt2d: coeffs must be (cA, [(cH, cV, cD), ...]) as dwt2d returns")
    if isinstance(coeffs[1], list) and coeffs[1] and isinstance(coeffs[1][0], (tuple, list)):
        flat = [coeffs[0], *[c for level in coeffs[1] for c in level]]
    elif isinstance(coeffs[1], (tuple, list)):
        flat = [coeffs[0], *[c for level in coeffs[1:] for c in level]]
    else:
        flat = list(coeffs)
    if len(flat) < 4 or (len(flat) - 1) % 3 or not all(isinstance(c, Tensor) for c in flat):
        raise ValueError(
            "idwt2d: coeffs must be (cA, [(cH, cV, cD), ...]) of Tensors, three details per level"
        )
    return flat


def _check_shapes_2d(flat: list[Tensor], F: int, mode: str) -> None:
    shape = tuple(flat[0].shape[-2:])
    for i in range(1, len(flat), 3):
        level = tuple(c.shape[-2:] for c in flat[i : i + 3])
        if len(set(level)) != 1:
            raise ValueError(f"idwt2d: the details (cH, cV, cD) of a level must share one shape, got {level}")
        d = level[0]
        if any(a not in (b, b + 1) for a, b in zip(shape, d, strict=True)):
            raise ValueError(
                f"idwt2d: the approximation is {shape} but the details {d}: the lists are not of one "
                "decomposition"
            )
        if mode == "symmetric" and min(d) < F // 2:
            raise ValueError(f"idwt2d: {d} coefficients are too few for a filter of length {F}")
        shape = tuple(_synthesis_len(s, F, mode) for s in d)


# --------------------------------------------------------------------------------------------
# fake kernels and autograd


def _lengths(L: int, F: int, level: int, mode: str) -> list[int]:
    n = [L]
    for _ in range(level):
        n.append(_analysis_len(n[-1], F, mode))
    return n


def _fake_dwt1d(x, filters, level, mode):
    n = _lengths(x.shape[-1], filters.shape[1], level, mode)
    return [x.new_empty((*x.shape[:-1], n[level]))] + [
        x.new_empty((*x.shape[:-1], n[l])) for l in range(level, 0, -1)
    ]


def _fake_dwt2d(x, filters, level, mode):
    F = filters.shape[1]
    nh, nw = _lengths(x.shape[-2], F, level, mode), _lengths(x.shape[-1], F, level, mode)
    out = [x.new_empty((*x.shape[:-2], nh[level], nw[level]))]
    for l in range(level, 0, -1):
        out += [x.new_empty((*x.shape[:-2], nh[l], nw[l])) for _ in range(3)]
    return out


def _fake_idwt1d(coeffs, filters, mode):
    return coeffs[0].new_empty(
        (*coeffs[0].shape[:-1], _synthesis_len(coeffs[-1].shape[-1], filters.shape[1], mode))
    )


def _fake_idwt2d(coeffs, filters, mode):
    F = filters.shape[1]
    h, w = coeffs[-1].shape[-2:]
    return coeffs[0].new_empty(
        (*coeffs[0].shape[:-2], _synthesis_len(h, F, mode), _synthesis_len(w, F, mode))
    )


def _fake_dwt1d_backward(grads, filters, level, mode, length):
    g = next(t for t in grads if t is not None)
    return g.new_empty((*g.shape[:-1], length))


def _fake_dwt2d_backward(grads, filters, level, mode, height, width):
    g = next(t for t in grads if t is not None)
    return g.new_empty((*g.shape[:-2], height, width))


def _fake_idwt1d_backward(grad, lengths, filters, mode):
    return [grad.new_empty((*grad.shape[:-1], n)) for n in lengths]


def _fake_idwt2d_backward(grad, shapes, filters, mode):
    return [
        grad.new_empty((*grad.shape[:-2], shapes[2 * i], shapes[2 * i + 1])) for i in range(len(shapes) // 2)
    ]


def _setup_dwt(ctx, inputs, output):
    x, filters, level, mode = inputs
    ctx.save_for_backward(filters)
    ctx.level, ctx.mode, ctx.size = level, mode, tuple(x.shape[-2:])


def _backward_dwt1d(ctx, grads):
    (filters,) = ctx.saved_tensors
    return (
        torch.ops.dtwin.dwt1d_backward(list(grads), filters, ctx.level, ctx.mode, ctx.size[-1]),
        None,
        None,
        None,
    )


def _backward_dwt2d(ctx, grads):
    (filters,) = ctx.saved_tensors
    return (
        torch.ops.dtwin.dwt2d_backward(list(grads), filters, ctx.level, ctx.mode, *ctx.size),
        None,
        None,
        None,
    )


def _setup_idwt(ctx, inputs, output):
    coeffs, filters, mode = inputs
    ctx.save_for_backward(filters)
    ctx.mode = mode
    ctx.shapes = [list(c.shape[-2:]) for c in coeffs]


def _backward_idwt1d(ctx, grad):
    (filters,) = ctx.saved_tensors
    lengths = [s[-1] for s in ctx.shapes]
    return list(torch.ops.dtwin.idwt1d_backward(grad, lengths, filters, ctx.mode)), None, None


def _backward_idwt2d(ctx, grad):
    (filters,) = ctx.saved_tensors
    shapes = [v for s in ctx.shapes for v in s]
    return list(torch.ops.dtwin.idwt2d_backward(grad, shapes, filters, ctx.mode)), None, None


def _fake_conv(x, weight, filters, level, mode):
    modes = 1
    for size in weight.shape[3:]:
        modes = modes * size
    coarse = x.new_empty((weight.shape[0], modes, x.shape[0], x.shape[1]))
    return x.new_empty((x.shape[0], weight.shape[2], *x.shape[2:])), coarse


def _fake_conv_backward(grad, weight, coarse, filters, level, mode, need_x, need_w):
    shape = (coarse.shape[2], coarse.shape[3], *grad.shape[2:])
    return (
        grad.new_empty(shape) if need_x else grad.new_empty((0,)),
        weight.new_empty(weight.shape) if need_w else weight.new_empty((0,)),
    )


def _setup_conv(ctx, inputs, output):
    _, weight, filters, level, mode = inputs
    ctx.save_for_backward(weight, output[1], filters)
    ctx.level, ctx.mode = level, mode
    ctx.mark_non_differentiable(output[1])


def _make_conv_backward(op: str):
    def backward(ctx, grad, _grad_coarse):
        weight, coarse, filters = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx, gw = getattr(torch.ops.dtwin, f"{op}_backward")(
            grad, weight, coarse, filters, ctx.level, ctx.mode, need_x, need_w
        )
        return gx if need_x else None, gw if need_w else None, None, None, None

    return backward


_library.register("dwt1d", fake=_fake_dwt1d, backward=_backward_dwt1d, setup_context=_setup_dwt)
_library.register("dwt1d_backward", fake=_fake_dwt1d_backward)
_library.register("idwt1d", fake=_fake_idwt1d, backward=_backward_idwt1d, setup_context=_setup_idwt)
_library.register("idwt1d_backward", fake=_fake_idwt1d_backward)
_library.register("dwt2d", fake=_fake_dwt2d, backward=_backward_dwt2d, setup_context=_setup_dwt)
_library.register("dwt2d_backward", fake=_fake_dwt2d_backward)
_library.register("idwt2d", fake=_fake_idwt2d, backward=_backward_idwt2d, setup_context=_setup_idwt)
_library.register("idwt2d_backward", fake=_fake_idwt2d_backward)
_library.register(
    "wavelet_conv1d",
    fake=_fake_conv,
    backward=_make_conv_backward("wavelet_conv1d"),
    setup_context=_setup_conv,
)
_library.register("wavelet_conv1d_backward", fake=_fake_conv_backward)
_library.register(
    "wavelet_conv2d",
    fake=_fake_conv,
    backward=_make_conv_backward("wavelet_conv2d"),
    setup_context=_setup_conv,
)
_library.register("wavelet_conv2d_backward", fake=_fake_conv_backward)


# --------------------------------------------------------------------------------------------
# references: filter banks as convolutions, differentiable by autograd


def _extend_index(first: int, last: int, L: int, mode: str, device) -> Tensor:
    m = torch.arange(first, last + 1, device=device)
    if mode == "symmetric":
        r = torch.remainder(m, 2 * L)
        return torch.where(r >= L, 2 * L - 1 - r, r)
    Lp = L + (L % 2)
    r = torch.remainder(m, Lp)
    return torch.where(r == L, torch.full_like(r, L - 1), r)


def _analysis(x: Tensor, f: Tensor, mode: str) -> Tensor:
    """One level along the last dim: y[i] = sum_j f[j] x[ext(2 i + s - j)]."""
    L, F = x.shape[-1], f.shape[0]
    n = _analysis_len(L, F, mode)
    s = 1 if mode == "symmetric" else F // 2
    e = x[..., _extend_index(s - F + 1, 2 * (n - 1) + s, L, mode, x.device)]
    # cross-correlation with the reversed filter over the window starting at s - F + 1
    y = torch.nn.functional.conv1d(e.reshape(-1, 1, e.shape[-1]), f.flip(0).view(1, 1, F), stride=2)
    return y.view(*x.shape[:-1], n)


def _synthesis(a: Tensor | None, d: Tensor | None, filters: Tensor, mode: str) -> Tensor:
    """One level: approximation and detail (None = zero) back to 2 n - F + 2 (symmetric) or 2 n samples."""
    F = filters.shape[1]
    c0 = a if a is not None else d
    n = c0.shape[-1]
    out = 0
    if mode == "symmetric":
        for c, g in ((a, filters[2]), (d, filters[3])):
            if c is None:
                continue
            flat = c.reshape(-1, 1, n)
            phases = [torch.nn.functional.conv1d(flat, g[r::2].flip(0).view(1, 1, F // 2)) for r in (0, 1)]
            out = out + torch.stack(phases, -1).reshape(*c.shape[:-1], 2 * (n - F // 2 + 1))
        return out
    p = torch.arange(2 * n, device=c0.device)[:, None]
    j = torch.arange(F, device=c0.device)[None, :]
    q = p + j - F // 2
    index = torch.remainder(torch.div(q, 2, rounding_mode="floor"), n)
    for c, f in ((a, filters[0]), (d, filters[1])):
        if c is None:
            continue
        taps = torch.where(
            q % 2 == 0, f[None, :].expand(2 * n, F), torch.zeros_like(f)[None, :].expand(2 * n, F)
        )
        out = out + (c[..., index] * taps).sum(-1)
    return out


def dwt1d_reference(x: Tensor, filters: Tensor, level: int, mode: str) -> list[Tensor]:
    """pywt.wavedec: [cA_level, cD_level, ..., cD_1]."""
    details, a = [], x
    for _ in range(level):
        details.append(_analysis(a, filters[1], mode))
        a = _analysis(a, filters[0], mode)
    return [a, *reversed(details)]


def idwt1d_reference(coeffs: list[Tensor], filters: Tensor, mode: str) -> Tensor:
    """pywt.waverec: the approximation cut to the detail's length where one longer."""
    a = coeffs[0]
    for d in coeffs[1:]:
        a = _synthesis(a[..., : d.shape[-1]], d, filters, mode)
    return a


def _along(x: Tensor, dim: int, fn) -> Tensor:
    return fn(x.transpose(dim, -1)).transpose(dim, -1)


def _analysis2d(x: Tensor, filters: Tensor, mode: str, details: bool = True) -> list[Tensor]:
    lo = _along(x, -2, lambda t: _analysis(t, filters[0], mode))
    a = _analysis(lo, filters[0], mode)
    if not details:
        return [a]
    hi = _along(x, -2, lambda t: _analysis(t, filters[1], mode))
    return [
        a,
        _analysis(hi, filters[0], mode),
        _analysis(lo, filters[1], mode),
        _analysis(hi, filters[1], mode),
    ]


def _synthesis2d(a, h, v, d, filters: Tensor, mode: str) -> Tensor:
    lo = _synthesis(a, v, filters, mode) if (a is not None or v is not None) else None
    hi = _synthesis(h, d, filters, mode) if (h is not None or d is not None) else None
    return _along_pair(lo, hi, filters, mode)


def _along_pair(lo: Tensor | None, hi: Tensor | None, filters: Tensor, mode: str) -> Tensor:
    t_lo = lo.transpose(-2, -1) if lo is not None else None
    t_hi = hi.transpose(-2, -1) if hi is not None else None
    return _synthesis(t_lo, t_hi, filters, mode).transpose(-2, -1)


def dwt2d_reference(x: Tensor, filters: Tensor, level: int, mode: str) -> list[Tensor]:
    """pywt.wavedec2, flat: [cA, cH_level, cV_level, cD_level, ..., cH_1, cV_1, cD_1]."""
    levels, a = [], x
    for _ in range(level):
        a, h, v, d = _analysis2d(a, filters, mode)
        levels.append((h, v, d))
    return [a] + [c for lv in reversed(levels) for c in lv]


def idwt2d_reference(coeffs: list[Tensor], filters: Tensor, mode: str) -> Tensor:
    """pywt.waverec2 from the flat list."""
    a = coeffs[0]
    for i in range(1, len(coeffs), 3):
        h, v, d = coeffs[i : i + 3]
        a = _synthesis2d(a[..., : h.shape[-2], : h.shape[-1]], h, v, d, filters, mode)
    return a


def wavelet_conv1d_reference(x: Tensor, weight: Tensor, filters: Tensor, level: int, mode: str) -> Tensor:
    """dwt -> mix (cA_level, cD_level) -> zero finer details -> idwt, cut to the input length."""
    coeffs = dwt1d_reference(x, filters, level, mode)
    mixed = [torch.einsum("bim,iom->bom", coeffs[k], weight[k]) for k in (0, 1)]
    zeros = [
        torch.zeros((*mixed[0].shape[:-1], c.shape[-1]), dtype=x.dtype, device=x.device) for c in coeffs[2:]
    ]
    return idwt1d_reference(mixed + zeros, filters, mode)[..., : x.shape[-1]]


def wavelet_conv2d_reference(x: Tensor, weight: Tensor, filters: Tensor, level: int, mode: str) -> Tensor:
    """The 2D layer: the four coarsest bands mixed, the finer details zero."""
    coeffs = dwt2d_reference(x, filters, level, mode)
    mixed = [torch.einsum("bihw,iohw->bohw", coeffs[k], weight[k]) for k in range(4)]
    zeros = [
        torch.zeros((*mixed[0].shape[:-2], *c.shape[-2:]), dtype=x.dtype, device=x.device) for c in coeffs[4:]
    ]
    return idwt2d_reference(mixed + zeros, filters, mode)[..., : x.shape[-2], : x.shape[-1]]
