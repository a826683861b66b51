"""onnxruntime-genai runs an exported bundle's graph from the genai_config.json we write, and agrees with us."""

import json

import numpy as np
import pytest

from gptdeploy.errors import ExportError

pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")
og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is optional (the dev extra installs it)")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tokenizer):
    """One exported bundle (the graph export is the slow part): the Llama variant, whose rotary positions and
    grouped-query cache are what a foreign runtime most easily gets wrong."""
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.export.pipeline import export_bundle
    from tests.helpers import MODEL_VARIANTS, tiny_model

    folder = tmp_path_factory.mktemp("genai")
    checkpoint = save_checkpoint(folder / "checkpoint", tiny_model(**MODEL_VARIANTS["llama"]), tokenizer)
    return export_bundle(checkpoint, folder / "bundle", tasks=False).bundle


@pytest.fixture(scope="module")
def genai_model(bundle):
    from gptdeploy.export.genai_config import write_bundle_genai_config

    write_bundle_genai_config(bundle)
    return og.Model(str(bundle))


def genai_greedy(model, prompt: np.ndarray, max_length: int) -> tuple[list[int], np.ndarray]:
    """onnxruntime-genai's own greedy loop; returns the generated tokens and the logits after the prompt."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=max_length, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt.astype(np.int32))
    first_logits = np.array(generator.get_logits())[0, -1]
    while not generator.is_done():
        generator.generate_next_token()
    return [int(t) for t in generator.get_sequence(0)[len(prompt) :]], first_logits


def test_the_config_describes_the_graph_and_tokenizer(bundle, genai_model, tokenizer):
    config = json.loads((bundle / "genai_config.json").read_text())
    decoder = config["model"]["decoder"]
    assert config["model"]["type"] == "decoder" and decoder["filename"] == "decoder-fp32/model.onnx"
    assert decoder["inputs"]["past_key_names"] == "past_key_values.%d.key"
    assert decoder["outputs"]["present_value_names"] == "present.%d.value"
    assert (config["model"]["eos_token_id"], config["model"]["bos_token_id"]) == (tokenizer.eos_id, tokenizer.bos_id)
    assert json.loads((bundle / "tokenizer_config.json").read_text())["eos_token"] == "<|eos|>"


def test_genai_greedy_tokens_and_logits_equal_the_golden_references(bundle, genai_model, tokenizer):
    from gptdeploy.golden import load_golden

    golden = load_golden(bundle / "golden.npz")
    for index, tokens in enumerate(golden.tokens):
        prompt_length = golden.prompt_lengths[index]
        generated, logits = genai_greedy(genai_model, tokens[:prompt_length], len(tokens))
        expected = golden.continuation(index)
        if tokenizer.eos_id in expected:  # onnxruntime-genai stops at eos, as our generate() does by default
            expected = expected[: expected.index(tokenizer.eos_id) + 1]
        assert generated == expected, golden.prompts[index]
        reference = golden.logits[index][prompt_length - 1]
        assert np.abs(logits - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())


def test_genai_tokenizer_encodes_like_ours(bundle, genai_model, tokenizer):
    from gptdeploy.golden import load_golden

    genai_tokenizer = og.Tokenizer(genai_model)
    for prompt in [*load_golden(bundle / "golden.npz").prompts, "Grüße, 12345 and  two  spaces\n"]:
        ids = tokenizer.encode(prompt)
        assert list(genai_tokenizer.encode(prompt)) == ids
        assert genai_tokenizer.decode(np.array(ids, dtype=np.int32)) == tokenizer.decode(ids)


def test_an_unknown_artifact_or_foreign_graph_is_refused(bundle, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.genai_config import write_bundle_genai_config, write_genai_config
    from gptdeploy.tokenizer import Tokenizer

    with pytest.raises(ExportError, match="no ONNX artifact 'onnx-int3'.*onnx-fp32"):
        write_bundle_genai_config(bundle, artifact="onnx-int3")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])  # fmt: skip
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    (tmp_path / "tokenizer.json").write_text((bundle / "tokenizer.json").read_text())
    loaded = load_bundle(bundle)
    with pytest.raises(ExportError, match="does not have gptdeploy's decoder IO names"):
        write_genai_config(tmp_path, loaded.config, Tokenizer.load(bundle), "foreign.onnx")
    assert not (tmp_path / "genai_config.json").exists()


def test_genai_runs_a_quantized_graph_like_our_runtime(bundle, tokenizer, tmp_path):
    """The config can name any graph with our IO: an int4 one (MatMulNBits) decodes the same tokens on both."""
    import shutil

    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.genai_config import write_genai_config
    from gptdeploy.export.quantize_transforms import quantize_int4
    from gptdeploy.golden import load_golden
    from gptdeploy.runtimes.ort_runtime import open_graph

    copy = shutil.copytree(bundle, tmp_path / "bundle")
    (copy / "decoder-int4").mkdir()
    quantize_int4(copy / "decoder-fp32" / "model.onnx", copy / "decoder-int4" / "model.onnx")
    config = load_bundle(copy).config
    write_genai_config(copy, config, tokenizer, "decoder-int4/model.onnx")
    model = og.Model(str(copy))
    golden = load_golden(copy / "golden.npz")
    with open_graph(copy / "decoder-int4" / "model.onnx", config, tokenizer, precision="int4") as runtime:
        for tokens, prompt_length in zip(golden.tokens, golden.prompt_lengths, strict=True):
            generated, _ = genai_greedy(model, tokens[:prompt_length], len(tokens))
            assert generated == runtime_greedy(runtime, tokens[:prompt_length], len(generated))


def runtime_greedy(runtime, prompt: np.ndarray, steps: int) -> list[int]:
    runtime.reset()
    tokens = [int(runtime.prefill(0, prompt).argmax())]
    while len(tokens) < steps:
        tokens.append(int(runtime.decode([0], tokens[-1:])[0].argmax()))
    return tokens
