"""ONNX export: the policy and the dynamics model as ONNX graphs (built with ``onnx.helper``).

Needs the ``export`` extra (``pip install "fastmbrl[export]"``: onnx, and onnxruntime to run the
files). The graphs use opset 17 and IR version 8, so any onnxruntime from 1.14 on reads them.

``policy.onnx``
    input ``obs`` float32 (B, D_obs) -> output ``action`` float32 (B, D_act): the SAC actor's
    deterministic action ``clip(scale * tanh(mean) + bias, low, high)``.
``model.onnx``
    inputs ``obs`` float32 (B, D_obs), ``act`` float32 (B, D_act) -> outputs ``mean``, ``logvar``
    float32 (E, B, D_obs): every member's next-observation mean and log-variance (raw units);
    with a learned reward head also ``reward_mean``, ``reward_logvar`` float32 (E, B).

B is a free dimension (named ``batch``). The maths is that of ``fastmbrl.deploy._params``.
Non-finite inputs are not checked (they propagate to the outputs).
"""
import numpy as np

from fastmbrl.deploy._params import ModelParams, PolicyParams

__all__ = ["policy_onnx", "model_onnx", "OPSET", "IR_VERSION"]

OPSET = 17
IR_VERSION = 8


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("format onnx: needs the onnx package; install it with pip install "
                          "\"fastmbrl[export]\" (onnx and onnxruntime)") from None
    return onnx


class _Graph:
    """A small builder: constants become initializers, each op gets a fresh output name."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes, self.inits = [], []
        self._n = 0

    def const(self, name, value, dtype=np.float32):
        arr = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name=name))
        return name

    def op(self, op_type, *inputs, out=None, **attrs):
        self._n += 1
        name = out or f"{op_type.lower()}_{self._n}"
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [name],
                                                     name=f"n{self._n}_{op_type}", **attrs))
        return name

    def activation(self, x, activation):
        if activation == "relu":
            return self.op("Relu", x)
        if activation == "tanh":
            return self.op("Tanh", x)
        if activation == "silu":        # z / (1 + exp(-z)), as fastmbrl's kernels
            one = self.const(f"one_{self._n}", 1.0)
            return self.op("Div", x, self.op("Add", one, self.op("Exp", self.op("Neg", x))))
        return x

    def softplus(self, z, tag):
        """``max(z, 0) + log(1 + exp(-|z|))``: no overflow for any z."""
        one = self.const(f"one_{tag}", 1.0)
        tail = self.op("Log", self.op("Add", one, self.op("Exp", self.op("Neg",
                                                                         self.op("Abs", z)))))
        return self.op("Add", self.op("Relu", z), tail)

    def slice(self, x, start, end, axis, tag):
        s = self.const(f"{tag}_starts", [start], np.int64)
        e = self.const(f"{tag}_ends", [end], np.int64)
        a = self.const(f"{tag}_axes", [axis], np.int64)
        return self.op("Slice", x, s, e, a)

    def model(self, name, inputs, outputs, doc, metadata):
        onnx = self.onnx
        graph = onnx.helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = onnx.helper.make_model(graph, producer_name="fastmbrl",
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)])
        m.ir_version = IR_VERSION
        m.doc_string = doc
        onnx.helper.set_model_props(m, {k: str(v) for k, v in metadata.items()})
        onnx.checker.check_model(m)
        return m


def _tensor(onnx, name, dims):
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims)


def policy_onnx(params, metadata=None):
    """The deterministic policy as a serialized ONNX model.

    Parameters
    ----------
    params : PolicyParams
        From ``fastmbrl.deploy._params.policy_params(agent)``.
    metadata : dict, optional
        Written to the model's metadata_props (values as strings).

    Returns
    -------
    bytes
        input ``obs`` float32 (B, D_obs), output ``action`` float32 (B, D_act).

    Raises
    ------
    ImportError
        When the onnx package is not installed.
    TypeError
        When ``params`` is not a PolicyParams.
    """
    if not isinstance(params, PolicyParams):
        raise TypeError(f"params: expected PolicyParams, got {type(params).__name__}")
    onnx = _onnx()
    g = _Graph(onnx)
    h = "obs"
    last = len(params.weights) - 1
    for i, (w, b) in enumerate(params.weights):
        h = g.op("Add", g.op("MatMul", h, g.const(f"W{i}", w)), g.const(f"b{i}", b))
        if i < last:
            h = g.activation(h, params.activation)
    mean = g.slice(h, 0, params.act_dim, 1, "mean")
    a = g.op("Add", g.op("Mul", g.op("Tanh", mean), g.const("scale", params.scale)),
             g.const("bias", params.bias))
    a = g.op("Min", g.op("Max", a, g.const("low", params.low)), g.const("high", params.high),
             out="action")
    doc = ("fastmbrl policy: obs float32 (batch, D_obs) -> action float32 (batch, D_act), "
           "clip(scale * tanh(mean) + bias, low, high), the SAC actor's deterministic action")
    model = g.model("fastmbrl_policy", [_tensor(onnx, "obs", ["batch", params.obs_dim])],
                    [_tensor(onnx, "action", ["batch", params.act_dim])], doc,
                    {"fastmbrl.kind": "policy", **(metadata or {})})
    return model.SerializeToString()


def model_onnx(params, metadata=None):
    """Every member of the dynamics model as a serialized ONNX model.

    Parameters
    ----------
    params : ModelParams
        From ``fastmbrl.deploy._params.model_params(model)``.
    metadata : dict, optional
        Written to the model's metadata_props (values as strings); the elites are added.

    Returns
    -------
    bytes
        inputs ``obs`` float32 (B, D_obs), ``act`` float32 (B, D_act); outputs ``mean``,
        ``logvar`` float32 (E, B, D_obs), and with a reward head ``reward_mean``,
        ``reward_logvar`` float32 (E, B).

    Raises
    ------
    ImportError
        When the onnx package is not installed.
    TypeError
        When ``params`` is not a ModelParams.
    """
    if not isinstance(params, ModelParams):
        raise TypeError(f"params: expected ModelParams, got {type(params).__name__}")
    onnx = _onnx()
    g = _Graph(onnx)
    d_obs, d_out, e = params.obs_dim, params.out_dim, params.ensemble_size
    # ---- network input [obs[plain], sin(obs[angle]), cos(obs[angle]), act], normalised
    if params.angle_idx.size:
        plain = g.op("Gather", "obs", g.const("plain_idx", params.plain_idx, np.int64), axis=1)
        ang = g.op("Gather", "obs", g.const("angle_idx", params.angle_idx, np.int64), axis=1)
        x = g.op("Concat", plain, g.op("Sin", ang), g.op("Cos", ang), "act", axis=1)
    else:
        x = g.op("Concat", "obs", "act", axis=1)
    h = g.op("Div", g.op("Sub", x, g.const("in_mean", params.in_mean)),
             g.const("in_std", params.in_std))
    # ---- every member at once: (B, n) @ (E, n, m) -> (E, B, m), then (E, B, n) @ (E, n, m)
    last = len(params.weights) - 1
    for i, (w, b) in enumerate(params.weights):
        h = g.op("Add", g.op("MatMul", h, g.const(f"W{i}", w)),
                 g.const(f"b{i}", b[:, None, :]))
        if i < last:
            h = g.activation(h, params.activation)
    mean_n = g.slice(h, 0, d_out, 2, "mean_n")
    raw = g.slice(h, d_out, 2 * d_out, 2, "raw")
    # ---- soft log-variance bounds, then raw units
    max_lv, min_lv = g.const("max_logvar", params.max_logvar), g.const("min_logvar",
                                                                       params.min_logvar)
    lv = g.op("Sub", max_lv, g.softplus(g.op("Sub", max_lv, raw), "upper"))
    lv = g.op("Add", min_lv, g.softplus(g.op("Sub", lv, min_lv), "lower"))
    logvar = g.op("Add", lv, g.const("logvar_shift", params.logvar_shift))
    mean = g.op("Add", g.const("out_mean", params.out_mean),
                g.op("Mul", g.const("out_std", params.out_std), mean_n))
    delta = g.op("Mul", "obs", g.const("delta_mask", params.delta_mask))
    g.op("Add", g.slice(mean, 0, d_obs, 2, "obs_mean"), delta, out="mean")
    g.op("Identity", g.slice(logvar, 0, d_obs, 2, "obs_logvar"), out="logvar")
    outputs = [_tensor(onnx, "mean", [e, "batch", d_obs]),
               _tensor(onnx, "logvar", [e, "batch", d_obs])]
    if params.has_reward:
        axes = g.const("reward_axes", [2], np.int64)
        g.op("Squeeze", g.slice(mean, d_obs, d_obs + 1, 2, "rew_mean"), axes, out="reward_mean")
        g.op("Squeeze", g.slice(logvar, d_obs, d_obs + 1, 2, "rew_logvar"), axes,
             out="reward_logvar")
        outputs += [_tensor(onnx, "reward_mean", [e, "batch"]),
                    _tensor(onnx, "reward_logvar", [e, "batch"])]
    doc = ("fastmbrl dynamics model: obs float32 (batch, D_obs), act float32 (batch, D_act) -> "
           "mean, logvar float32 (E, batch, D_obs): each member's Gaussian over the next "
           "observation (raw units, change added back)"
           + ("; reward_mean, reward_logvar (E, batch): the learned reward" if params.has_reward
              else ""))
    meta = {"fastmbrl.kind": "model", "fastmbrl.elites": ",".join(str(int(v))
                                                                  for v in params.elites),
            **(metadata or {})}
    model = g.model("fastmbrl_model", [_tensor(onnx, "obs", ["batch", d_obs]),
                                       _tensor(onnx, "act", ["batch", params.act_dim])],
                    outputs, doc, meta)
    return model.SerializeToString()
