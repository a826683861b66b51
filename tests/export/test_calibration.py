import numpy as np
import pytest

pytest.importorskip("onnxruntime")


def test_calibration_texts_are_fixed_training_documents_never_the_held_out_ones():
    from gptdeploy.corpus.tasks import generate_tasks
    from gptdeploy.corpus.world import generate_corpus
    from gptdeploy.export.quantize import calibration_texts
    from gptdeploy.golden import golden_prompts

    documents = generate_corpus().documents
    texts = calibration_texts(documents, 32)
    assert texts == calibration_texts(documents, 32) and len(set(texts)) == 32
    held_out = documents[-int(len(documents) * 0.05) :]  # what pretraining validates on
    assert not set(texts) & set(held_out)
    prompts = golden_prompts(generate_tasks()[1], documents)
    assert not any(text.startswith(prompt) for text in texts for prompt in prompts)


def test_the_reader_feeds_the_decoder_graphs_whole_input_set(tokenizer):
    """Every input the exported graph declares, an empty past included; that the graph runs on these feeds is
    checked where static quantization calibrates a real graph (tests/export/test_quantize.py)."""
    from gptdeploy.config import GPTConfig
    from gptdeploy.export.calibration import CorpusCalibrationReader
    from gptdeploy.graph_contract import input_names, past_names

    config = GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, n_kv_head=2)  # cache heads != heads
    texts = ["Mia lives in Riverton with her dog Pip and walks him every morning.", "Tom had 12 apples.", "Hi."]
    reader = CorpusCalibrationReader(config, tokenizer, texts, max_tokens=20, progress=False)
    feeds = list(iter(reader.get_next, None))
    assert len(feeds) == len(reader) == 3 and reader.get_next() is None
    for feed in feeds:
        assert list(feed) == input_names(config.n_layer)
        length = feed["input_ids"].shape[1]
        assert 1 < length <= 20 and feed["input_ids"][0, 0] == tokenizer.bos_id
        assert feed["input_ids"].dtype == feed["position_ids"].dtype == feed["attention_mask"].dtype == np.int64
        np.testing.assert_array_equal(feed["attention_mask"], np.ones((1, length)))
        np.testing.assert_array_equal(feed["position_ids"], np.arange(length)[None])
        for name in past_names(config.n_layer):
            assert feed[name].shape == (1, 2, 0, config.head_dim) and feed[name].dtype == np.float32
    assert feeds[0]["input_ids"].shape[1] == 20  # cut at max_tokens
