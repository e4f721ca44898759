"""The fast scoring path: the saved transform graph and the Keras model, evaluated in numpy.

Why: TensorFlow spends about 2 ms per call on a transform of ~280 ops and a small network
whatever the batch size (op dispatch, tensor conversion), 20x the arithmetic. Here the same
transform (`model.transform.transform_trips`, the one definition, run with numpy ops) and the
same network (the saved model's own layers and weights) score one trip in about 0.1 ms.

Why it cannot skew from the graph:
- The transform is not a copy: `transform_trips` is the function the graph was built from; only
  the array library differs. Its parameters (means, variances, quantile boundaries, clip bounds,
  the price index mean) are read out of the saved graph itself (`TransformGraph.params`), and the
  vocabularies from its assets; an out-of-vocabulary value gets its bucket from TensorFlow's own
  hash (cached), so ids are the graph's.
- The network is interpreted from the saved model's config and weights, layer by layer; a layer
  type it does not know makes the fast path unavailable (the graph serves).
- At load, `FastScorer.check` scores a set of probe trips (every repair, missing and unknown
  values, out-of-vocabulary names, absent store features) both ways; beyond `TOLERANCE` the fast
  path is switched off for that model with a warning. Tests hold it to the graph on the whole
  holdout.

Graphs saved before their parameters were recorded (`transform.PARAM_PREFIX`) have none: such
models are scored by the traced TensorFlow graph, as before.

The scorer bundle: loading the graph and the Keras model to build this scorer imports TensorFlow
(~8 s here) and takes ~20 s in a fresh process, the cold start of every stream task. So training
saves the checked scorer as a bundle (`FastScorer.save`: `scorer.npz` with the analyzer values,
the layer weights and the graph's own outputs on the probe trips; `scorer.json` with the
vocabularies and the layer configs), logged with the model. `FastScorer.load` needs numpy only
(the out-of-vocabulary hash is FarmHash's Fingerprint64, which is TensorFlow's
`to_hash_bucket_fast`, from the `cityhash` package) and repeats the load-time check without
TensorFlow: it scores the probe trips and requires the graph's recorded outputs to `TOLERANCE`.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np

from chicago_taxi.core import schema
from chicago_taxi.core.schema import REPAIRS_OUTPUT

log = logging.getLogger(__name__)
# Largest difference allowed between the fast path and the graph, per transformed value and per
# fare (absolute, and relative to the value), at load and in tests.
TOLERANCE = 1e-5
OOV_CACHE_SIZE = 4096
# The scorer bundle (`FastScorer.save` / `FastScorer.load`).
BUNDLE_FORMAT = 1
BUNDLE_ARRAYS = "scorer.npz"
BUNDLE_SPEC = "scorer.json"


class Unavailable(Exception):
    """This model cannot be scored by the fast path (the traced graph scores it)."""


class NumpyOps:
    """`transform.TFOps` in numpy, float32 like the graph: NumPy 2 treats Python scalars as weak,
    so `np.where(c, x, 0.0)` and `x * 3600.0` stay float32 for a float32 x."""

    where = staticmethod(np.where)
    is_nan = staticmethod(np.isnan)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    log1p = staticmethod(np.log1p)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    asin = staticmethod(np.arcsin)
    sqrt = staticmethod(np.sqrt)

    @staticmethod
    def zeros_int(like):
        return np.zeros(len(like), dtype=np.int64)

    @staticmethod
    def to_int(x):
        return x.astype(np.int64)

    @staticmethod
    def to_float(x):
        return x.astype(np.float32)

    @staticmethod
    def fill_nan(x, value):
        return np.where(np.isnan(x), value, x)

    @staticmethod
    def clip(x, low, high):
        # np.clip costs several times more than this for small arrays.
        return np.minimum(np.maximum(x, low), high)

    @staticmethod
    def strip_or(text, token: str):
        missing = token.encode()
        return np.array([(v.strip() or missing) if isinstance(v, bytes) else (str(v).strip().encode() or missing) for v in text], dtype=object)


class SavedAnalyzers:
    """`transform.TFTAnalyzers` answered from a saved graph: its recorded parameters and vocabularies."""

    def __init__(self, params: dict[str, np.ndarray], vocabularies: dict[str, list[bytes]]):
        self.params = params
        self.vocabularies = {name: {token: i for i, token in enumerate(tokens)} for name, tokens in vocabularies.items()}
        self._oov: dict[str, OrderedDict] = {name: OrderedDict() for name in vocabularies}
        self._z_scales: dict[str, tuple[np.float32, np.float32]] = {}
        self._boundaries: dict[tuple, np.ndarray] = {}

    def _param(self, name: str) -> np.ndarray:
        try:
            return self.params[name]
        except KeyError as exc:
            raise Unavailable(f"the saved graph records no parameter {name!r}") from exc

    def upper_quantile(self, x, trusted, quantile: float, name: str):
        return np.float32(self._param(f"{name}.upper_bound")[0])

    def z_score(self, x, name: str):
        """`transform.z_score` with the saved mean and variance (sqrt taken once, in float32 as in the graph)."""
        scale = self._z_scales.get(name)
        if scale is None:
            mean, var = (np.float32(self._param(f"{name}.{p}")[0]) for p in ("mean", "var"))
            scale = self._z_scales[name] = (mean, np.sqrt(var))
        mean, denominator = scale
        return (x - mean) / denominator if denominator != 0 else x - mean

    def bucketize(self, x, num_buckets: int, name: str):
        key = (name, x.dtype)
        boundaries = self._boundaries.get(key)
        if boundaries is None:
            boundaries = self._boundaries[key] = self._param(f"{name}.boundaries").astype(x.dtype)
        return np.searchsorted(boundaries, x, side="right").astype(np.int64)

    def vocabulary_ids(self, text, top_k: int, num_oov_buckets: int, name: str):
        vocabulary = self.vocabularies.get(name)
        if vocabulary is None:
            raise Unavailable(f"the saved graph has no vocabulary {name!r}")
        ids = np.empty(len(text), dtype=np.int64)
        for i, token in enumerate(text):
            found = vocabulary.get(token)
            ids[i] = found if found is not None else len(vocabulary) + self._oov_bucket(name, token, num_oov_buckets)
        return ids

    def _oov_bucket(self, name: str, token: bytes, num_oov_buckets: int) -> int:
        """TensorFlow's bucket for a token outside the vocabulary (the hash the graph's lookup
        table uses), remembered for the next time."""
        cache = self._oov[name]
        bucket = cache.get(token)
        if bucket is None:
            bucket = oov_bucket(token, num_oov_buckets)
            cache[token] = bucket
            if len(cache) > OOV_CACHE_SIZE:
                cache.popitem(last=False)
        return bucket

    def present_mean(self, filled, present, name: str):
        return np.float32(self._param(f"{name}.mean")[0])


def oov_bucket(token: bytes, num_buckets: int) -> int:
    """`tf.strings.to_hash_bucket_fast`: FarmHash Fingerprint64 of the bytes, modulo the bucket
    count (a test holds it to TensorFlow's on many tokens), without importing TensorFlow."""
    from farmhash import Fingerprint64

    return Fingerprint64(token) % num_buckets


class NumpyNetwork:
    """A saved functional Keras model evaluated in numpy, from its config and weights. Knows the
    layers `model.network` builds; any other layer type raises `Unavailable`.

    It computes in float64 although the weights are float32: a float32 product's last bits depend
    on how many rows BLAS multiplies at once, and a fare rounded to cents then differs between a
    trip sent alone and the same trip in a batch (seen once in CI: 18.21 against 18.22). In
    float64 the batch-size noise is about 1e-16 of the fare, far below a cent's rounding edge,
    and the result stays within `TOLERANCE` of the float32 graph."""

    def __init__(self, steps: list[tuple], outputs: list[str]):
        self.steps = steps  # (layer name, class, inbound layer names, weights, config) in graph order
        self.outputs = outputs
        for name, kind, _, _, config in steps:
            if kind not in _LAYERS:
                raise Unavailable(f"layer {name} of type {kind} has no numpy form")
            if kind == "Dense" and config.get("activation") not in ("relu", "linear"):
                raise Unavailable(f"Dense layer {name} has activation {config.get('activation')!r}")

    @classmethod
    def from_model(cls, model) -> NumpyNetwork:
        """From a loaded Keras model's config and weights."""
        config = model.get_config()
        steps = []
        for layer in config["layers"]:
            inbound = [_history(t) for node in layer.get("inbound_nodes", []) for t in _tensors(node)]
            weights = [np.asarray(w, dtype=np.float64) for w in model.get_layer(layer["name"]).get_weights()]
            steps.append((layer["name"], layer["class_name"], inbound, weights, layer["config"]))
        return cls(steps, [_history(t) for t in _tensors(config["output_layers"])])

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        values: dict[str, np.ndarray] = {}
        for name, kind, inbound, weights, config in self.steps:
            values[name] = _LAYERS[kind]([values[n] for n in inbound], weights, config, inputs.get(name))
        (output,) = self.outputs
        return values[output].reshape(-1)


def _history(tensor) -> str:
    """The layer name a serialized Keras tensor (or an output_layers entry) comes from."""
    if isinstance(tensor, dict):
        return tensor["config"]["keras_history"][0]
    return tensor[0]


def _tensors(node) -> list:
    """Serialized tensors in a node's args (nested lists flattened), in order."""
    if isinstance(node, dict) and node.get("class_name") == "__keras_tensor__":
        return [node]
    if isinstance(node, dict):
        return [t for arg in node.get("args", []) for t in _tensors(arg)]
    if isinstance(node, list) and node and isinstance(node[0], str):  # ["layer", node_index, tensor_index]
        return [node]
    if isinstance(node, list):
        return [t for item in node for t in _tensors(item)]
    return []


def _dense(args, weights, config, _):
    out = args[0] @ weights[0]
    if config.get("use_bias", True):
        out = out + weights[1]
    return np.maximum(out, 0.0) if config.get("activation") == "relu" else out


def _relu(args, weights, config, _):
    if config.get("negative_slope", 0.0) or config.get("threshold", 0.0):
        raise Unavailable("a ReLU with a slope or threshold")
    max_value = config.get("max_value")
    out = np.maximum(args[0], 0.0)
    return out if max_value is None else np.minimum(out, np.float64(max_value))


def _input(args, weights, config, given):
    if given is None:
        raise Unavailable(f"no value for model input {config['name']}")
    return given


_LAYERS = {
    "InputLayer": _input,
    "Embedding": lambda args, weights, config, _: weights[0][args[0]],
    "Reshape": lambda args, weights, config, _: args[0].reshape((len(args[0]), *config["target_shape"])),
    "Concatenate": lambda args, weights, config, _: np.concatenate(args, axis=config.get("axis", -1)),
    "Multiply": lambda args, weights, config, _: np.prod(np.stack(args), axis=0),
    "Dense": _dense,
    "ReLU": _relu,
}


class FastScorer:
    """Raw feature arrays (`transform.raw_frame_to_features`) -> (fares, repair masks), in numpy."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        vocabularies: dict[str, list[bytes]],
        network: NumpyNetwork,
        input_names,
        kinds: dict[str, tuple[str, int]],
    ):
        self.params, self.vocabularies, self.kinds = params, vocabularies, kinds
        self.analyzers = SavedAnalyzers(params, vocabularies)
        self.network = network
        single_threaded_blas()
        self.input_names = set(input_names)
        self.dense = [name for name, (kind, _) in kinds.items() if kind == "dense"]
        self.categorical = [name for name, (kind, _) in kinds.items() if kind == "categorical"]
        self.scales = [name for name, (kind, _) in kinds.items() if kind == "scale"]

    @classmethod
    def from_graph(cls, graph, model, kinds: dict[str, tuple[str, int]]) -> FastScorer:
        """From the saved transform graph (`transform.TransformGraph`) and the loaded Keras model."""
        params = graph.params()
        if not params:
            raise Unavailable("the transform graph was saved before its parameters were recorded")
        vocabularies = {name: graph.output.vocabulary_by_name(name) for name in schema.VOCAB_FEATURES}
        return cls(params, vocabularies, NumpyNetwork.from_model(model), graph.input_names, kinds)

    def save(self, directory: Path, probe_fares: np.ndarray, probe_repairs: np.ndarray) -> Path:
        """Write the bundle: everything `load` needs, and the graph's outputs on `probe_trips()`
        (fares before the floor, repair masks) that `load` checks against."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"param/{k}": np.asarray(v) for k, v in self.params.items()}
        arrays |= {f"weight/{name}/{i}": w for name, _, _, weights, _ in self.network.steps for i, w in enumerate(weights)}
        arrays |= {"probe/fares": np.asarray(probe_fares, dtype=np.float64), "probe/repairs": np.asarray(probe_repairs, dtype=np.int64)}
        spec = {
            "format": BUNDLE_FORMAT,
            "tolerance": TOLERANCE,
            # bytes as latin-1 text: one character per byte, so any token survives JSON
            "vocabularies": {name: [t.decode("latin-1") for t in tokens] for name, tokens in self.vocabularies.items()},
            "layers": [{"name": n, "class": k, "inbound": i, "weights": len(w), "config": c} for n, k, i, w, c in self.network.steps],
            "outputs": self.network.outputs,
            "input_names": sorted(self.input_names),
            "kinds": {name: list(kind) for name, kind in self.kinds.items()},
        }
        np.savez(directory / BUNDLE_ARRAYS, **arrays)
        (directory / BUNDLE_SPEC).write_text(json.dumps(spec, indent=1, default=_not_json))
        return directory

    @classmethod
    def load(cls, directory: Path) -> FastScorer:
        """The bundle `save` wrote, checked: the probe trips must score as the graph scored them
        (`Unavailable` otherwise, or when the bundle is missing, of another format or incomplete)."""
        directory = Path(directory)
        try:
            spec = json.loads((directory / BUNDLE_SPEC).read_text())
            with np.load(directory / BUNDLE_ARRAYS) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise Unavailable(f"no readable scorer bundle in {directory}: {exc}") from exc
        if spec.get("format") != BUNDLE_FORMAT:
            raise Unavailable(f"scorer bundle {directory} has format {spec.get('format')!r}, this code reads {BUNDLE_FORMAT}")
        try:
            steps = [
                (
                    layer["name"],
                    layer["class"],
                    layer["inbound"],
                    [arrays[f"weight/{layer['name']}/{i}"] for i in range(layer["weights"])],
                    layer["config"],
                )
                for layer in spec["layers"]
            ]
            scorer = cls(
                {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")},
                {name: [t.encode("latin-1") for t in tokens] for name, tokens in spec["vocabularies"].items()},
                NumpyNetwork(steps, spec["outputs"]),
                spec["input_names"],
                {name: tuple(kind) for name, kind in spec["kinds"].items()},
            )
            expected = arrays["probe/fares"], arrays["probe/repairs"]
        except KeyError as exc:
            raise Unavailable(f"scorer bundle {directory} lacks {exc}") from exc
        scorer.check_probes(*expected)
        return scorer

    def check_probes(self, graph_fares: np.ndarray, graph_repairs: np.ndarray) -> None:
        """`Unavailable` unless `probe_trips()` score within `TOLERANCE` of the graph's outputs."""
        from chicago_taxi.model.transform import raw_frame_to_features

        fares, repairs = self(raw_frame_to_features(probe_trips()))
        if len(fares) != len(graph_fares):
            raise Unavailable(f"the graph's outputs cover {len(graph_fares)} probe trips, there are {len(fares)}")
        worst = max(max_difference(fares, graph_fares), float(np.any(repairs != graph_repairs)))
        if worst > 0:
            raise Unavailable(f"the numpy path differs from the graph on probe trips (excess {worst:.3g})")

    def transform(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from chicago_taxi.model.transform import transform_trips

        return transform_trips(features, NumpyOps, self.analyzers)

    def __call__(self, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        transformed = self.transform(features)
        dense = np.empty((len(features["trip_miles"]), len(self.dense)), dtype=np.float64)
        for j, name in enumerate(self.dense):  # cheaper than casting each column and stacking them
            dense[:, j] = transformed[name]
        inputs = {"dense_features": dense}
        inputs.update({n: transformed[n] for n in self.categorical})
        inputs.update({n: transformed[n].astype(np.float64) for n in self.scales})
        return self.network(inputs), transformed[REPAIRS_OUTPUT]


def _not_json(value):
    raise Unavailable(f"a layer config holds {type(value).__name__}, which the scorer bundle cannot save")


def single_threaded_blas() -> None:
    """One BLAS thread for this process. The network's matrices are tiny: OpenBLAS's second
    thread costs 15x the product itself (1 ms instead of 0.07 for 100 trips through a 60x128
    layer, measured here), more when the cores are busy."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def max_difference(fast: np.ndarray, graph: np.ndarray) -> float:
    """The largest |fast - graph| beyond the tolerance's relative share of |graph| (0: within)."""
    fast, graph = np.asarray(fast, dtype=np.float64), np.asarray(graph, dtype=np.float64)
    excess = np.abs(fast - graph) - TOLERANCE * np.maximum(1.0, np.abs(graph))
    return float(max(0.0, excess.max(initial=0.0)))


def probe_trips():
    """Trips that take every branch of the transform: clean ones, each repair, missing and
    unknown values, names outside the vocabularies, and store features absent or present."""
    import pandas as pd

    base = {
        "trip_miles": 2.5,
        "trip_seconds": 720.0,
        "pickup_latitude": 41.88,
        "pickup_longitude": -87.63,
        "dropoff_latitude": 41.90,
        "dropoff_longitude": -87.65,
        "payment_type": "Cash",
        "company": "Flash Cab",
        "pickup_community_area": 8,
        "dropoff_community_area": 32,
        "trip_start_hour": 14,
        "trip_start_day": 3,
        "trip_start_month": 6,
    }
    variants = [
        {},
        {"trip_miles": 0.0},
        {"trip_seconds": 0.0},
        {"trip_miles": 400.0, "trip_seconds": 60.0},
        {"trip_miles": 5000.0, "trip_seconds": 90000.0},
        {"pickup_latitude": 10.0, "pickup_longitude": 10.0},
        {"dropoff_latitude": None, "dropoff_longitude": None},
        {"company": None, "payment_type": "  Credit Card  "},
        {"company": "A Company Nobody Knew", "payment_type": "Barter"},
        {"pickup_community_area": 99, "dropoff_community_area": None},
        {"trip_miles": None, "trip_seconds": None},
        {"trip_miles": 18.2, "trip_seconds": 2400.0, "pickup_latitude": 41.97, "pickup_longitude": -87.90},
    ]
    rows = [{**base, **v} for v in variants]
    store = {f: np.nan for f in schema.STORE_FEATURES}
    with_store = {
        f: (2.0 if schema.FEATURE_SPECS[f].transform == "log_z_score" else 1.1 if f in schema.SCALE_FEATURES else 3.0) for f in schema.STORE_FEATURES
    }
    return pd.DataFrame([{**row, **(with_store if i % 2 else store)} for i, row in enumerate(rows)])
