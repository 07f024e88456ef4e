"""Weight-file reading: safetensors only, clear errors for missing, truncated and foreign files."""
import json

import pytest
import torch
from safetensors.torch import save_file

from cascade_core.weights import WeightFileError, find_weight_files, read_header, read_tensors


def test_roundtrip_and_header(tmp_path):
    path = tmp_path / "m.safetensors"
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64)}
    save_file(tensors, str(path))
    header = read_header(path)
    assert header["a"].shape == (3, 4) and header["a"].dtype == "F32"
    loaded = read_tensors(path)
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])


def test_missing_file(tmp_path):
    with pytest.raises(WeightFileError, match="not found"):
        read_tensors(tmp_path / "nope.safetensors")


def test_truncated_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.randn(64, 64)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(WeightFileError, match="truncated"):
        read_tensors(path)


def test_not_safetensors(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"PK\x03\x04 this is a zip archive, not safetensors" * 10)
    with pytest.raises(WeightFileError, match="not a safetensors file"):
        read_header(path)


def test_pickle_refused(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(b"\x80\x04")
    with pytest.raises(WeightFileError, match="pickle"):
        read_tensors(path)


def test_find_sharded_and_variants(tmp_path):
    save_file({"a": torch.zeros(1)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(1)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    files = find_weight_files(tmp_path, "model")
    assert [f.name for f in files] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_file({"a": torch.zeros(1)}, str(tmp_path / "model.fp16.safetensors"))
    assert find_weight_files(tmp_path, "model", variant="fp16")[0].name == "model.fp16.safetensors"


def test_shard_outside_folder_refused(tmp_path):
    index = {"weight_map": {"a": "../evil.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(WeightFileError, match="outside"):
        find_weight_files(tmp_path, "model")


def test_only_pickles_in_folder(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(WeightFileError, match="pickle"):
        find_weight_files(tmp_path, "model")
