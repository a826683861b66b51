"""onnxruntime-genai runs every ONNX artifact of a bundle straight from its folder, and agrees with us."""

import json

import numpy as np
import pytest

pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")
og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is optional (the dev extra installs it)")

LOOSE = dict(max_logit_diff=10.0, mean_kl=10.0, near_tie=100.0, top1_agreement=0.0)
# every artifact kind ONNX Runtime runs, as (name, how it is made)
ARTIFACTS = ["onnx-fp32", "onnx-fused-ort", "onnx-fused-std", "onnx-int8", "onnx-int8-static", "onnx-int4", "onnx-fp16",
             "onnx-int4-slot"]  # fmt: skip


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def bundle(request, tmp_path_factory, tokenizer):
    """One bundle per position scheme (rotary: positions from the lengths; learned: position_ids fed by genai) with
    every ONNX artifact kind: exported, fused for either target, and quantized from the exported and the slot graph."""
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.export.fusion import optimize_bundle
    from gptdeploy.export.pipeline import export_bundle
    from gptdeploy.export.quantize import quantize_bundle
    from gptdeploy.parity import Tolerance
    from tests.helpers import MODEL_VARIANTS, tiny_model

    folder = tmp_path_factory.mktemp(f"genai-{request.param}")
    checkpoint = save_checkpoint(folder / "checkpoint", tiny_model(**MODEL_VARIANTS[request.param]), tokenizer)
    bundle = export_bundle(checkpoint, folder / "bundle", tasks=False).bundle
    optimize_bundle(bundle, "onnxruntime")
    optimize_bundle(bundle, "tensorrt")  # standard Attention, which ONNX Runtime runs too
    loose = Tolerance(**LOOSE)
    for precision in ("int8", "int8-static", "int4", "fp16"):
        quantize_bundle(bundle, precision, tasks=False, tolerance=loose)
    quantize_bundle(bundle, "int4", source="onnx-fused-ort", name="onnx-int4-slot", tasks=False, tolerance=loose)
    return bundle


def artifact_folder(bundle, name):
    from gptdeploy.bundle import load_bundle

    return bundle / load_bundle(bundle).artifact(name=name).folder


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


def ours_greedy(bundle, artifact: str, prompt: np.ndarray, steps: int) -> tuple[list[int], np.ndarray]:
    from gptdeploy.runtimes.base import load_runtime

    with load_runtime(bundle, "onnxruntime", artifact=artifact, max_slots=1) as runtime:
        logits = runtime.prefill(0, prompt)
        tokens = [int(logits.argmax())]
        while len(tokens) < steps:
            tokens.append(int(runtime.decode([0], tokens[-1:])[0].argmax()))
    return tokens, logits


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_genai_runs_every_artifact_from_its_folder_like_our_runtime(bundle, artifact, tokenizer):
    """The artifact's folder is a genai model as written (its files are hashed with the artifact); genai's greedy
    tokens equal ours on the same graph, and its first logits equal ours."""
    from gptdeploy.bundle import load_bundle
    from gptdeploy.golden import load_golden

    folder = artifact_folder(bundle, artifact)
    assert {"genai_config.json", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    recorded = {path.rsplit("/", 1)[-1] for path in load_bundle(bundle).artifact(name=artifact).files}
    assert "genai_config.json" in recorded
    model = og.Model(str(folder))
    golden = load_golden(bundle / "golden.npz")
    for tokens, prompt_length in zip(golden.tokens[:3], golden.prompt_lengths[:3], strict=True):
        prompt = tokens[:prompt_length]
        generated, logits = genai_greedy(model, prompt, len(tokens))
        expected, our_logits = ours_greedy(bundle, artifact, prompt, len(generated))
        if tokenizer.eos_id in expected:  # genai stops at eos
            expected = expected[: expected.index(tokenizer.eos_id) + 1]
        assert generated == expected
        assert np.abs(logits - our_logits).max() <= 1e-3 * max(1.0, np.abs(our_logits).max())


def test_the_fp32_graphs_equal_the_golden_references_in_genai(bundle, tokenizer):
    from gptdeploy.golden import load_golden

    golden = load_golden(bundle / "golden.npz")
    for artifact in ("onnx-fp32", "onnx-fused-ort"):
        model = og.Model(str(artifact_folder(bundle, artifact)))
        for index, tokens in enumerate(golden.tokens):
            prompt_length = golden.prompt_lengths[index]
            generated, logits = genai_greedy(model, tokens[:prompt_length], len(tokens))
            expected = golden.continuation(index)
            if tokenizer.eos_id in expected:
                expected = expected[: expected.index(tokenizer.eos_id) + 1]
            assert generated == expected, (artifact, golden.prompts[index])
            reference = golden.logits[index][prompt_length - 1]
            assert np.abs(logits - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())


def test_the_slot_graph_is_wrapped_and_shares_the_weights(bundle):
    import onnx

    folder = artifact_folder(bundle, "onnx-fused-ort")
    config = json.loads((folder / "genai_config.json").read_text())
    assert config["model"]["decoder"]["filename"] == "model.genai.onnx"
    assert config["search"]["past_present_share_buffer"] is True
    wrapper = onnx.load(str(folder / "model.genai.onnx"), load_external_data=False)
    assert "attention_mask" in [value.name for value in wrapper.graph.input]
    assert not {"seqlens_k", "total_sequence_length"} & {value.name for value in wrapper.graph.input}
    assert (folder / "model.genai.onnx").stat().st_size < 1e6  # the graph only: its weights are model.onnx.data
    exported = json.loads((artifact_folder(bundle, "onnx-fp32") / "genai_config.json").read_text())
    assert exported["model"]["decoder"]["filename"] == "model.onnx"
    assert exported["search"]["past_present_share_buffer"] is False


@pytest.mark.parametrize("artifact", ["onnx-fp32", "onnx-fused-ort"])
def test_a_right_padded_genai_batch_gives_each_prompt_its_tokens_alone(bundle, artifact, tokenizer):
    """genai feeds a batch padded with the pad token; right padding keeps every row as it is alone."""
    from gptdeploy.golden import load_golden

    model = og.Model(str(artifact_folder(bundle, artifact)))
    golden = load_golden(bundle / "golden.npz")
    prompts = [golden.tokens[i][: golden.prompt_lengths[i]] for i in range(2)]
    width, max_length = max(map(len, prompts)), 40
    alone = [genai_greedy(model, prompt, max_length - width + len(prompt))[0] for prompt in prompts]
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=max_length, do_sample=False, batch_size=2)
    generator = og.Generator(model, params)
    rows = [np.pad(p, (0, width - len(p)), constant_values=tokenizer.pad_id) for p in prompts]
    generator.append_tokens(np.array(rows, dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    for row, expected in enumerate(alone):
        together = [int(t) for t in generator.get_sequence(row)[width:]]
        steps = min(len(together), len(expected))
        assert steps > 0 and together[:steps] == expected[:steps], row


def test_genai_encodes_text_with_bos_as_generate_does(bundle, tokenizer):
    """A text prompt through genai's tokenizer (asked to add special tokens) and generator gives the tokens our
    generate() gives for the same text."""
    from gptdeploy.generate import GenerationConfig, generate
    from gptdeploy.runtimes.base import load_runtime

    folder = artifact_folder(bundle, "onnx-fused-ort")
    model = og.Model(str(folder))
    genai_tokenizer = og.Tokenizer(model)
    genai_tokenizer.update_options(add_special_tokens="true")
    texts = ["Mia lives in", "Q: What is 2 plus 3?\nA:", "Grüße, 12345 and  two  spaces\n"]
    with load_runtime(bundle, "onnxruntime", artifact="onnx-fused-ort") as runtime:
        for text in texts:
            ids = genai_tokenizer.encode(text)
            assert list(ids) == tokenizer.encode(text, bos=True)
            ours = generate(runtime, text, GenerationConfig(max_new_tokens=8))
            generated, _ = genai_greedy(model, ids, len(ids) + 8)
            assert generated == ours.tokens, text
            assert genai_tokenizer.decode(ids) == tokenizer.decode(ids) == text
