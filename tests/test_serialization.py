"""tracecc.save / tracecc.load: round trips of state dicts, optimizer state and nested
containers in every dtype; truncated, tampered and foreign files fail clearly."""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
from collections import OrderedDict

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn as nn
import tracecc.optim as optim
from tracecc.runtime.errors import SerializationError

ALL_DTYPES = [tc.bool, tc.uint8, tc.int8, tc.int16, tc.int32, tc.int64, tc.float16, tc.bfloat16,
              tc.float32, tc.float64]


def round_trip(obj, tmp_path):
    path = tmp_path / "obj.tc"
    tc.save(obj, path)
    return tc.load(path)


def test_model_state_dict_round_trip(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    model(tc.randn(4, 1, 4, 4))  # move the running statistics
    sd = model.state_dict()
    loaded = round_trip(sd, tmp_path)
    assert isinstance(loaded, OrderedDict) and list(loaded) == list(sd)
    for key in sd:
        assert loaded[key].dtype is sd[key].dtype and loaded[key].shape == sd[key].shape
        np.testing.assert_array_equal(loaded[key].numpy(), sd[key].numpy())
    fresh = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    fresh.load_state_dict(loaded)
    x = tc.randn(2, 1, 4, 4)
    model.eval(), fresh.eval()
    np.testing.assert_array_equal(model(x).detach().numpy(), fresh(x).detach().numpy())


def test_optimizer_state_round_trip(tmp_path):
    params = [nn.Parameter(tc.randn(3, 2)), nn.Parameter(tc.randn(2))]
    opt = optim.Adam(params, lr=0.01, betas=(0.8, 0.9))
    for _ in range(2):
        for p in params:
            p.grad = tc.randn(*p.shape)
        opt.step()
    sd = opt.state_dict()
    loaded = round_trip(sd, tmp_path)
    assert loaded["param_groups"] == sd["param_groups"]  # betas stay a tuple, keys stay ints
    assert set(loaded["state"]) == {0, 1}
    np.testing.assert_array_equal(loaded["state"][1]["exp_avg_sq"].numpy(),
                                  sd["state"][1]["exp_avg_sq"].numpy())
    opt2 = optim.Adam(params)
    opt2.load_state_dict(loaded)
    assert opt2.state[params[0]]["step"].item() == 2.0


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_every_dtype_round_trips_bit_for_bit(dtype, tmp_path):
    raw = np.random.default_rng(0).standard_normal((3, 5)) * 50
    t = tc.tensor(raw).to(dtype)
    loaded = round_trip({"t": t, "empty": tc.zeros(0, 4, dtype=dtype), "scalar": t[0, 0]}, tmp_path)
    assert loaded["t"].dtype is dtype and loaded["t"].shape == (3, 5)
    assert loaded["t"].numpy().tobytes() == t.numpy().tobytes()
    assert loaded["empty"].shape == (0, 4) and loaded["scalar"].ndim == 0


def test_nested_containers_numbers_and_identity(tmp_path):
    shared = tc.arange(4)
    obj = {"ints": [1, -2, 10**20], "floats": (0.5, math.inf, -math.inf, math.nan), "none": None,
           "flag": True, "text": "héllo", 3: "int key", "nested": [{"a": shared}, ("b", shared)],
           "dtype": tc.bfloat16, "array": np.arange(3, dtype=np.int16)}
    out = round_trip(obj, tmp_path)
    assert out["ints"] == [1, -2, 10**20] and out[3] == "int key" and out["none"] is None
    assert out["floats"][:3] == (0.5, math.inf, -math.inf) and math.isnan(out["floats"][3])
    assert isinstance(out["floats"], tuple) and out["flag"] is True and out["text"] == "héllo"
    assert out["nested"][0]["a"] is out["nested"][1][1]  # one tensor saved once, loaded once
    assert out["dtype"] is tc.bfloat16
    assert out["array"].dtype == np.int16 and out["array"].tolist() == [0, 1, 2]


def test_parameters_and_requires_grad_survive(tmp_path):
    p = nn.Parameter(tc.ones(2))
    q = tc.zeros(2, requires_grad=True)
    out = round_trip([p, q, tc.ones(1)], tmp_path)
    assert isinstance(out[0], nn.Parameter) and out[0].requires_grad
    assert out[1].requires_grad and not isinstance(out[1], nn.Parameter) and not out[2].requires_grad
    out[0].detach().numpy()[0] = 5  # loaded tensors own writable memory
    assert out[0].detach().numpy()[0] == 5


def test_file_objects_work():
    buf = io.BytesIO()
    tc.save({"w": tc.ones(3)}, buf)
    buf.seek(0)
    assert tc.load(buf)["w"].tolist() == [1.0, 1.0, 1.0]


def _saved_bytes(obj) -> bytes:
    buf = io.BytesIO()
    tc.save(obj, buf)
    return buf.getvalue()


def _load_bytes(data: bytes):
    return tc.load(io.BytesIO(data))


def test_truncated_tampered_and_foreign_files_fail_clearly():
    data = _saved_bytes({"w": tc.arange(100).float()})
    for cut in (10, len(data) // 2, len(data) - 1):
        with pytest.raises(SerializationError):
            _load_bytes(data[:cut])
    flipped = bytearray(data)
    flipped[-100] ^= 0x01  # a bit in the tensor payload
    with pytest.raises(SerializationError, match="checksum"):
        _load_bytes(bytes(flipped))
    with pytest.raises(SerializationError, match="magic"):
        _load_bytes(pickle.dumps({"w": 1}) + b"\0" * 64)
    with pytest.raises(SerializationError, match="too short"):
        _load_bytes(b"")


def test_a_forged_header_with_a_valid_checksum_is_still_rejected():
    """Someone may recompute the digest: the structure itself is validated too."""
    import hashlib

    def forge(header: dict, payload: bytes = b"") -> bytes:
        raw = json.dumps(header).encode()
        head = struct.pack("<8sIQ", b"TRACECC\0", 1, len(raw)) + raw
        head += b"\0" * (-len(head) % 64)
        body = head + payload
        return body + hashlib.sha256(body).digest()

    bad_offset = {"root": {"t": "tensor", "dtype": "float32", "shape": [4], "offset": 0, "nbytes": 16}}
    with pytest.raises(SerializationError, match="outside the payload"):
        _load_bytes(forge(bad_offset, b"\0" * 8))
    lying_size = {"root": {"t": "tensor", "dtype": "float32", "shape": [4], "offset": 0, "nbytes": 8}}
    with pytest.raises(SerializationError, match="claims"):
        _load_bytes(forge(lying_size, b"\0" * 16))
    with pytest.raises(SerializationError, match="unknown entry type"):
        _load_bytes(forge({"root": {"t": "pickle", "v": "cos\nsystem\n"}}))
    with pytest.raises(SerializationError):
        _load_bytes(forge({"root": {"t": "tensor", "dtype": "object", "shape": [1], "offset": 0,
                                    "nbytes": 8}}))


def test_unsupported_objects_are_refused_at_save_time(tmp_path):
    with pytest.raises(SerializationError, match=r"obj\['layer'\].*Linear"):
        tc.save({"layer": nn.Linear(1, 1)}, tmp_path / "x.tc")
    with pytest.raises(SerializationError, match="key"):
        tc.save({(1, 2): 3}, tmp_path / "x.tc")
    assert not (tmp_path / "x.tc").exists()
