"""ONNX export: every model variant's graph matches the PyTorch model in prefill and decode under ONNX Runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from gptdeploy.export import onnx_export
from gptdeploy.export.onnx_export import ExportReport, export_onnx
from gptdeploy.graph_contract import TOTAL_DIM, input_names, output_names, past_names, present_names
from gptdeploy.model import GPT
from tests.helpers import MODEL_VARIANTS, tiny_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4
# GPT-2 and Llama style cover the common paths; the other variants cover the remaining options and cost an export each.
FAST_VARIANTS = ("gpt2", "llama")


@dataclass
class Exported:
    model: GPT
    report: ExportReport
    session: ort.InferenceSession


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(name, marks=() if name in FAST_VARIANTS else pytest.mark.slow, id=name) for name in MODEL_VARIANTS
    ],
)
def exported(request, tmp_path_factory) -> Exported:
    model = tiny_model(0, **MODEL_VARIANTS[request.param])
    report = export_onnx(model, tmp_path_factory.mktemp(request.param) / "model.onnx")
    session = ort.InferenceSession(str(report.model_path), providers=["CPUExecutionProvider"])
    return Exported(model, report, session)


def run_onnx(session, ids, mask, positions, past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    n_layer = len(past) // 2
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "position_ids": positions.numpy()}
    feed.update(zip(past_names(n_layer), past, strict=True))
    logits, *present = session.run(output_names(n_layer), feed)
    return logits, present


def run_torch(model, ids, mask, positions, past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    past_kv = [(torch.from_numpy(past[i]), torch.from_numpy(past[i + 1])) for i in range(0, len(past), 2)]
    with torch.no_grad():
        logits, present = model(ids, past_kv, mask, positions)
    return logits.numpy(), [t.numpy() for kv in present for t in kv]


def empty_past(model: GPT, batch: int, length: int = 0, seed: int | None = None) -> list[np.ndarray]:
    c = model.config
    shape = (batch, c.kv_heads, length, c.head_dim)
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(2 * c.n_layer)]


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max()) if a.size else 0.0


def test_prefill_left_padded_then_decode(exported):
    model, session, c = exported.model, exported.session, exported.model.config
    lengths = [6, 3, 1]
    B, S = len(lengths), max(lengths)
    torch.manual_seed(1)
    ids = torch.randint(0, c.vocab_size, (B, S))
    mask = torch.zeros(B, S, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, S - length :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)

    onnx_logits, onnx_present = run_onnx(session, ids, mask, positions, empty_past(model, B))
    torch_logits, torch_present = run_torch(model, ids, mask, positions, empty_past(model, B))
    real = mask.bool().numpy()
    assert onnx_logits.shape == (B, S, c.vocab_size)
    assert max_diff(onnx_logits[real], torch_logits[real]) <= TOLERANCE
    for ours, theirs in zip(onnx_present, torch_present, strict=True):
        assert ours.shape == (B, c.kv_heads, S, c.head_dim)
        assert max_diff(ours, theirs) <= TOLERANCE

    for step in range(3):
        ids = torch.randint(0, c.vocab_size, (B, 1))
        mask = torch.cat([mask, torch.ones(B, 1, dtype=torch.long)], dim=1)
        positions = mask.sum(-1, keepdim=True) - 1
        onnx_logits, onnx_present = run_onnx(session, ids, mask, positions, onnx_present)
        torch_logits, torch_present = run_torch(model, ids, mask, positions, torch_present)
        assert onnx_logits.shape == (B, 1, c.vocab_size)
        assert max_diff(onnx_logits, torch_logits) <= TOLERANCE, f"decode step {step}"
        for ours, theirs in zip(onnx_present, torch_present, strict=True):
            assert ours.shape == (B, c.kv_heads, S + step + 1, c.head_dim)
            assert max_diff(ours, theirs) <= TOLERANCE


@pytest.mark.parametrize(("batch", "seq", "past"), [(1, 7, 0), (5, 1, 9), (2, 4, 3)])
def test_shapes_other_than_the_traced_ones(exported, batch, seq, past):
    model, c = exported.model, exported.model.config
    torch.manual_seed(batch * 100 + seq)
    ids = torch.randint(0, c.vocab_size, (batch, seq))
    mask = torch.ones(batch, past + seq, dtype=torch.long)
    mask[0, : (past + seq) // 2] = 0  # some left padding in the first row
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, past:]
    cache = empty_past(model, batch, past, seed=seq)
    onnx_logits, onnx_present = run_onnx(exported.session, ids, mask, positions, cache)
    torch_logits, _ = run_torch(model, ids, mask, positions, cache)
    real = mask[:, past:].bool().numpy()
    assert onnx_logits.shape == (batch, seq, c.vocab_size)
    assert max_diff(onnx_logits[real], torch_logits[real]) <= TOLERANCE
    assert all(p.shape == (batch, c.kv_heads, past + seq, c.head_dim) for p in onnx_present)


def test_graph_io_names_types_and_dynamic_dims(exported):
    c = exported.model.config
    graph = onnx.load(exported.report.model_path, load_external_data=False).graph

    def signature(value) -> tuple[int, list[str | int]]:
        tensor = value.type.tensor_type
        return tensor.elem_type, [d.dim_param or d.dim_value for d in tensor.shape.dim]

    assert [v.name for v in graph.input] == input_names(c.n_layer)
    assert [v.name for v in graph.output] == output_names(c.n_layer)
    inputs, outputs = {v.name: signature(v) for v in graph.input}, {v.name: signature(v) for v in graph.output}
    int64, float32 = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT
    assert inputs["input_ids"] == (int64, ["batch", "sequence"])
    assert inputs["attention_mask"] == (int64, ["batch", TOTAL_DIM])
    assert inputs["position_ids"] == (int64, ["batch", "sequence"])
    assert outputs["logits"] == (float32, ["batch", "sequence", c.vocab_size])
    for name in past_names(c.n_layer):
        assert inputs[name] == (float32, ["batch", c.kv_heads, "past_sequence", c.head_dim])
    for name in present_names(c.n_layer):
        assert outputs[name] == (float32, ["batch", c.kv_heads, TOTAL_DIM, c.head_dim])


def test_weights_are_external_and_report_describes_files(exported):
    report, model = exported.report, exported.model
    path = report.model_path
    assert report.files == (path, path.with_name("model.onnx.data"))
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx.data"]  # no temporaries left
    # at least the embedding matrix; not every parameter: the exporter merges equal tensors (fresh norm weights)
    assert report.data_path.stat().st_size >= 4 * model.wte.weight.numel()
    assert path.stat().st_size < report.data_path.stat().st_size / 4
    proto = onnx.load(path, load_external_data=False)
    inline = [t for t in proto.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    assert sum(len(t.raw_data) for t in inline) < 4096  # only small shape constants stay in the graph
    assert {o.domain: o.version for o in proto.opset_import}[""] == report.opset == 18
    assert report.op_counts["MatMul"] >= 2 * model.config.n_layer
    assert sum(report.op_counts.values()) == len(proto.graph.node)
    assert report.seconds > 0


def test_io_names():
    assert input_names(2) == [
        "input_ids",
        "attention_mask",
        "position_ids",
        "past_key_values.0.key",
        "past_key_values.0.value",
        "past_key_values.1.key",
        "past_key_values.1.value",
    ]
    assert output_names(1) == ["logits", "present.0.key", "present.0.value"]


def test_failed_trace_leaves_no_files_and_keeps_an_earlier_export(tmp_path, monkeypatch):
    (tmp_path / "model.onnx").write_bytes(b"earlier graph")

    def fail(*args, **kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_onnx(tiny_model(0, n_layer=1), tmp_path / "model.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    assert (tmp_path / "model.onnx").read_bytes() == b"earlier graph"


def test_failure_after_files_are_staged_leaves_no_files(tmp_path, monkeypatch):
    real_save = torch.onnx.ONNXProgram.save

    def save_then_fail(self, destination, **kwargs):
        real_save(self, destination, **kwargs)
        assert Path(destination).is_file()
        raise OSError("disk full")

    monkeypatch.setattr(torch.onnx.ONNXProgram, "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export_onnx(tiny_model(0, n_layer=1), tmp_path / "out" / "model.onnx")
    assert list((tmp_path / "out").iterdir()) == []


def test_unwritable_path_fails_before_exporting(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setattr(onnx_export.torch.onnx, "export", pytest.fail)  # never reached
    with pytest.raises(OSError):
        export_onnx(tiny_model(0, n_layer=1), not_a_folder / "model.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
