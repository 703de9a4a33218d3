"""Numba inference forward pass of the ensemble MLP over the flat parameter layout.

Design
------
* One call runs one member on one contiguous block of rows: ``x (rows, D0) -> out (rows, DL)``. The
  model-step kernel (``fastmbrl.models._kernels``) calls it once per member block, from compiled
  code, so no Python is crossed inside a model step or a rollout.
* Matmuls go through ``np.dot`` on 2-D contiguous slices (scipy's OpenBLAS sgemm/dgemm; see
  docs/performance.md); a hand loop even for the narrow first layer was slower than BLAS.
* Bias + activation is one fused loop over the matmul output. For float32 SiLU the exponential is a
  polynomial times ``2**n`` built by a bit cast (``_f32_from_bits``), one pass that LLVM
  vectorizes (libm ``expf`` does not; SiLU was measured costing as much as the matmuls at width
  64, docs/performance.md). float64 uses ``math.exp`` (tests and gradient checks).
* The caller allocates everything: two hidden buffers ``h0``/``h1`` of at least
  ``rows * max(hidden widths)`` elements. ``ebuf`` is passed through the signatures for scratch
  but none of the paths here reads or writes it; nothing is allocated here.
"""
import math
import platform

import llvmlite.ir as ir
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

_JIT = dict(cache=True, nogil=True, fastmath=True, error_model="numpy")

# exp(t) = 2**n * exp(r), n = round(t / ln 2), |r| <= ln2 / 2; Cody-Waite split of ln 2 keeps r
# exact to float32 rounding, and a degree-6 Taylor polynomial gives ~2e-7 relative error on that
# interval.
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125
_LN2_LO = 1.428606820309417e-06
_EXP_CLAMP = 87.0


@intrinsic
def _f32_from_bits(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (a register move, vectorizable).

    Numba has no scalar bit cast; without one the polynomial exponential needed a second pass
    through an int32 view of a scratch buffer to build ``2**n``.
    """
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if bits.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif bits.bitwidth < 32:
            v = builder.sext(v, ir.IntType(32))
        return builder.bitcast(v, context.get_value_type(types.float32))

    return types.float32(bits), codegen


@intrinsic
def _bits_from_f32(typingctx, x):
    """The bits of a float32 as an int32 (the inverse of ``_f32_from_bits``)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


# x86 keeps its floating-point mode in the MXCSR register, per thread. Denormal (subnormal) float32
# operands and results take a microcode assist on Intel cores, tens of times slower than a normal
# operation; SAC's training data produce them (Adam's second moments of dead units decay through
# the subnormal range, tiny gradients square into it): on an Intel Xeon they slowed an MBPO run's
# SAC updates by 1.4-1.7x. Callers that want flush-to-zero (FTZ) and
# denormals-are-zero (DAZ) set both around a kernel call (from Python, or in a parallel region's
# body of its own) and restore the previous mode; on other processors these are no-ops. Inside a
# compiled function that goes on computing, LLVM assumes the default mode and does not order the
# switch against the arithmetic: it is not a way to flush part of a function.
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
_FTZ_DAZ = 0x8040


def _mxcsr_call(builder, name, ptr):
    fnty = ir.FunctionType(ir.VoidType(), [ir.PointerType(ir.IntType(8))])
    fn = builder.module.declare_intrinsic(name, fnty=fnty)
    builder.call(fn, [builder.bitcast(ptr, ir.PointerType(ir.IntType(8)))])


@intrinsic
def _fp_mode_get(typingctx):
    """The calling thread's floating-point control word (x86 MXCSR; 0 elsewhere)."""
    def codegen(context, builder, signature, args):
        if not _X86:
            return ir.Constant(ir.IntType(32), 0)
        ptr = builder.alloca(ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", ptr)
        return builder.load(ptr)

    return types.uint32(), codegen


@intrinsic
def _fp_mode_set(typingctx, mode):
    """Load ``mode`` into the calling thread's floating-point control word (x86 only)."""
    if not isinstance(mode, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        if _X86:
            ptr = builder.alloca(ir.IntType(32))
            v = args[0]
            if mode.bitwidth > 32:
                v = builder.trunc(v, ir.IntType(32))
            elif mode.bitwidth < 32:
                v = builder.zext(v, ir.IntType(32))
            builder.store(v, ptr)
            _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", ptr)
        return context.get_dummy_value()

    return types.void(mode), codegen


@njit(cache=True, nogil=True)
def _flush_denormals():
    """Turn on flush-to-zero and denormals-are-zero for the calling thread; returns the previous
    mode for ``_restore_fp_mode`` (x86; a no-op returning 0 elsewhere)."""
    old = _fp_mode_get()
    if _X86:
        _fp_mode_set(old | np.uint32(_FTZ_DAZ))
    return old


@njit(cache=True, nogil=True)
def _restore_fp_mode(old):
    """Restore the mode ``_flush_denormals`` returned (x86; a no-op elsewhere)."""
    if _X86:
        _fp_mode_set(old)


@njit(cache=True, parallel=True)
def _flush_denormals_team(modes_out):
    """``_flush_denormals`` on each of the ``modes_out.size`` threads of the calling thread's Numba
    team (call with ``numba.get_num_threads()`` elements); thread t keeps its previous mode in
    ``modes_out[t]`` for ``_restore_fp_mode_team``.

    Numba's static schedule runs iteration t of ``prange(n)`` on thread t of an n-thread team, so
    the two calls pair each thread with its own mode. The switch stays on in the team's threads
    between the calls, for the kernels run meanwhile.
    """
    for t in prange(modes_out.size):
        modes_out[t] = _flush_denormals()


@njit(cache=True, parallel=True)
def _restore_fp_mode_team(modes):
    """Give each thread of the team the mode ``_flush_denormals_team`` stored for it."""
    for t in prange(modes.size):
        _restore_fp_mode(modes[t])


@njit(**_JIT)
def _exp_f32(x):
    """float32 ``exp(x)``, ``x`` clamped to [-87, 87]: polynomial times ``2**n`` (~2e-7 relative).

    Small enough for LLVM to inline and vectorize the loops that call it. ``n`` comes from
    truncating a positive number (``t log2(e) + 128.5 >= 1``), i.e. floor without a libm call.
    """
    t = min(max(x, np.float32(-_EXP_CLAMP)), np.float32(_EXP_CLAMP))
    ki = np.int32(t * np.float32(_LOG2E) + np.float32(128.5))
    k = np.float32(ki) - np.float32(128.0)
    r = t - k * np.float32(_LN2_HI) - k * np.float32(_LN2_LO)
    one = np.float32(1.0)
    p = one + r * (one + r * (np.float32(0.5) + r * (np.float32(1.0 / 6.0) + r * (
        np.float32(1.0 / 24.0) + r * (np.float32(1.0 / 120.0) + r * np.float32(1.0 / 720.0))))))
    # 2**k has the biased exponent k + 127 = ki - 1 in bits 23-30
    return p * _f32_from_bits((ki - 1) << 23)


@njit(**_JIT)
def _silu_bias_f32(h, b, ebuf):
    """In place ``h = silu(h + b)`` for float32 with a vectorizable polynomial exponential.

    Parameters
    ----------
    h : float32 array (rows, D), C-contiguous; overwritten
    b : float32 array (D,)
    ebuf : float32 array, not used (signature parity with the callers' scratch)

    Notes
    -----
    One pass: ``z / (1 + exp(-z))`` with ``_exp_f32`` inlined, which LLVM vectorizes for the host
    CPU (AVX2 or AVX-512 lanes, whichever it compiles for).
    """
    rows, d = h.shape
    one = np.float32(1.0)
    for i in range(rows):
        for j in range(d):
            z = h[i, j] + b[j]
            h[i, j] = z / (one + _exp_f32(-z))


@njit(**_JIT)
def _exp_inplace(x, ebuf):
    """In place ``x = exp(x)`` on a 1-D array; float32 through the vectorizable polynomial.

    Parameters
    ----------
    x : float array (n,), C-contiguous; overwritten
    ebuf : float array of the same dtype, not used (signature parity)

    Notes
    -----
    float32: arguments are clamped to [-87, 87] (the result stays a normal float32), relative
    error about 2e-7; float64 calls ``math.exp`` per element.
    """
    n = x.shape[0]
    if x.itemsize != 4:
        for i in range(n):
            x[i] = math.exp(x[i])
        return
    for i in range(n):
        x[i] = _exp_f32(x[i])


@njit(**_JIT)
def _activate(v, activation):
    """One hidden activation of a scalar (codes of fastmbrl._config.ACTIVATIONS: 0 identity,
    1 ReLU, 2 tanh, 3 SiLU); the generic path of the bias + activation loops."""
    if activation == 1:
        return max(v, 0.0)
    if activation == 2:
        return math.tanh(v)
    if activation == 3:
        return v / (1.0 + math.exp(-v))
    return v


@njit(**_JIT)
def _bias_activation(h, b, activation, ebuf):
    """In place ``h = act(h + b)`` (fused); ``activation`` is a code of ``_config.ACTIVATIONS``.

    Parameters
    ----------
    h : float array (rows, D), C-contiguous; overwritten
    b : float array (D,)
    activation : int, 0 identity, 1 relu, 2 tanh, 3 silu
    ebuf : float array, not used (signature parity)
    """
    rows, d = h.shape
    if activation == 3 and h.itemsize == 4:
        _silu_bias_f32(h, b, ebuf)
        return
    for i in range(rows):
        for j in range(d):
            h[i, j] = _activate(h[i, j] + b[j], activation)


@njit(**_JIT)
def _member_layer(flat, layer_dims, ensemble_size, member, layer, offset):
    """Views ``(W (fan_in, fan_out), b (fan_out,))`` of one member's ``layer`` in ``flat``.

    ``offset`` is where ``layer``'s weights of all members start (0 for layer 0); the third value
    returned is where the next layer's start. Layout of ``fastmbrl.nn._flat``: per layer, the
    weights of every member, then their biases.
    """
    fan_in = layer_dims[layer]
    fan_out = layer_dims[layer + 1]
    w_size = fan_in * fan_out
    w_start = offset + member * w_size
    w = flat[w_start:w_start + w_size].reshape((fan_in, fan_out))
    offset += ensemble_size * w_size
    b_start = offset + member * fan_out
    b = flat[b_start:b_start + fan_out]
    return w, b, offset + ensemble_size * fan_out


@njit(**_JIT)
def _mlp_forward_flat(flat, layer_dims, ensemble_size, member, activation, x, out, h0, h1, ebuf):
    """Forward pass of one ensemble member over a block of rows (inference only).

    Parameters
    ----------
    flat : float array (n_params,)
        All members' parameters in the layout of ``fastmbrl.nn._flat``.
    layer_dims : int64 array (L+1,)
        ``(D0, D1, ..., DL)``.
    ensemble_size : int
        E, members stored in ``flat``.
    member : int
        The member to run, ``0 <= member < E``.
    activation : int
        Hidden activation code (``fastmbrl._config.ACTIVATIONS``); the last layer is linear.
    x : float array (rows, D0), C-contiguous
    out : float array (rows, DL), C-contiguous, written
    h0, h1 : float arrays (>= rows * max(D1..D_{L-1}),), scratch
    ebuf : float array, not used (signature parity)

    Notes
    -----
    ``h_{l+1} = act(h_l W_l[member] + b_l[member])`` for hidden layers, ``out = h_{L-1} W + b``
    last.
    """
    rows = x.shape[0]
    n_layers = layer_dims.shape[0] - 1
    offset = 0
    src = x
    for layer in range(n_layers):
        fan_out = layer_dims[layer + 1]
        w, b, offset = _member_layer(flat, layer_dims, ensemble_size, member, layer, offset)
        if layer == n_layers - 1:
            np.dot(src, w, out)
            for i in range(rows):
                for j in range(fan_out):
                    out[i, j] += b[j]
        else:
            buf = h0 if layer % 2 == 0 else h1
            dst = buf[:rows * fan_out].reshape((rows, fan_out))
            np.dot(src, w, dst)
            _bias_activation(dst, b, activation, ebuf)
            src = dst
