import gzip

import pytest
import torch

from gptdeploy.corpus.tasks import Example
from gptdeploy.data import IGNORE_INDEX, FinetuneData, PretrainData, read_documents, read_pairs
from gptdeploy.errors import DataError
from tests.helpers import SAMPLE_TEXT


def test_documents_come_from_files_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("first paragraph\n\nsecond paragraph\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("third")
    (tmp_path / "sub" / "c.txt.gz").write_bytes(gzip.compress(b"fourth\n\n\n\nfifth"))
    (tmp_path / "sub" / "ignored.bin").write_bytes(b"\x00\x01")
    assert read_documents([tmp_path]) == ["first paragraph", "second paragraph", "third", "fourth", "fifth"]
    assert read_documents([tmp_path / "sub" / "b.md"]) == ["third"]


def test_unreadable_text_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_documents([tmp_path / "missing.txt"])
    with pytest.raises(DataError, match="has no text files"):
        read_documents([tmp_path])
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_documents([tmp_path / "latin1.txt"])


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 2: not valid JSON"),
        ('["a", "b"]', "line 2: expected an object"),
        ('{"prompt": "a"}', "line 2: 'prompt' and 'completion' must be non-empty strings"),
        ('{"prompt": "a", "completion": 3}', "line 2: 'prompt' and 'completion'"),
    ],
)
def test_malformed_jsonl_names_the_line(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "Q: 1+1?\\nA:", "completion": " 2"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_pairs(path)


def test_pairs_are_read_with_an_optional_task(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "p", "completion": " c", "task": "t"}\n\n{"prompt": "p2", "completion": " c2"}\n')
    assert read_pairs(path) == [Example("t", "p", " c"), Example("custom", "p2", " c2")]


def test_pretraining_batches_depend_only_on_their_index(tokenizer):
    data = PretrainData(SAMPLE_TEXT * 30, tokenizer, block_size=16, batch_size=4, seed=1)
    first, again, other = data.batch(3), data.batch(3), data.batch(4)
    assert torch.equal(first.inputs, again.inputs) and not torch.equal(first.inputs, other.inputs)
    assert torch.equal(first.inputs[:, 1:], first.targets[:, :-1])
    assert first.inputs.shape == (4, 16) and first.tokens == 64
    assert data.val_batches(2) and data.val_chars_per_token > 1


def test_too_little_text_for_one_block_is_refused(tokenizer):
    with pytest.raises(DataError, match="fewer than one block"):
        PretrainData(["tiny", "texts"], tokenizer, block_size=64, batch_size=2)


def test_finetuning_loss_covers_the_completion_and_eos_only(tokenizer):
    example = Example("add", "Q: What is 2 plus 3?\nA:", " 5")
    data = FinetuneData([example], [example], tokenizer, block_size=64, batch_size=2)
    batch = data.batch(0)
    prompt_len = len(tokenizer.encode(example.prompt, bos=True))
    completion = tokenizer.encode(example.completion)
    targets = batch.targets[0]
    assert (targets[: prompt_len - 1] == IGNORE_INDEX).all()
    assert targets[prompt_len - 1 :].tolist() == [*completion, tokenizer.eos_id]
    assert batch.inputs[0, 0].item() == tokenizer.bos_id


def test_finetuning_batches_pad_on_the_right_and_cover_every_example_each_epoch(tokenizer):
    examples = [Example("t", f"Q: item {i}{'!' * i}\nA:", f" {i}") for i in range(6)]
    data = FinetuneData(examples, examples[:2], tokenizer, block_size=64, batch_size=3)
    seen = [tuple(row[row != tokenizer.pad_id].tolist()) for i in (0, 1) for row in data.batch(i).inputs]
    assert len(set(seen)) == 6
    batch = data.batch(0)
    assert (batch.targets[batch.inputs == tokenizer.pad_id] == IGNORE_INDEX).all()


def test_examples_longer_than_the_context_are_refused(tokenizer):
    long = Example("t", "word " * 50, " end")
    with pytest.raises(DataError, match="example 1 has .* tokens, more than the context of 16"):
        FinetuneData([long], [long], tokenizer, block_size=16, batch_size=1)


def masked_data(rate: float = 0.15):
    from gptdeploy.data import MaskedPretrainData
    from gptdeploy.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(SAMPLE_TEXT * 20, vocab_size=320, mask=True)
    return tokenizer, MaskedPretrainData(SAMPLE_TEXT * 40, tokenizer, block_size=32, batch_size=64, mask_rate=rate)


def test_masking_follows_the_bert_recipe():
    tokenizer, data = masked_data()
    originals = PretrainData(SAMPLE_TEXT * 40, tokenizer, 32, 64).batch(7).inputs  # the same windows, unmasked
    batch = data.batch(7)
    selected = batch.targets != IGNORE_INDEX
    special = torch.isin(originals, torch.tensor(sorted(tokenizer.special_ids)))
    assert not (selected & special).any()  # bos/eos are never selected
    assert torch.equal(batch.targets[selected], originals[selected])  # the loss predicts the original token
    assert torch.equal(batch.inputs[~selected], originals[~selected])  # unselected tokens are untouched
    share = selected.sum() / (~special).sum()
    assert 0.12 < share < 0.18
    masked = (batch.inputs == tokenizer.mask_id)[selected].float().mean()
    kept = (batch.inputs == originals)[selected].float().mean()
    assert 0.74 < masked < 0.86 and 0.05 < kept < 0.17  # 80% mask, 10% kept (+ random draws of the same token)


def test_masks_are_drawn_anew_per_batch_but_fixed_for_validation():
    _, data = masked_data(rate=0.3)
    first, again = data.batch(3), data.batch(3)
    assert torch.equal(first.inputs, again.inputs)  # a batch index alone decides (resume sees the same batches)
    windows = PretrainData.batch(data, 3).inputs
    assert not torch.equal(data._mask(windows, torch.Generator().manual_seed(1)).targets, first.targets)
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(data.val_batches(2), data.val_batches(2), strict=True))
    assert 0.25 < (first.targets != IGNORE_INDEX).float().mean() < 0.33


def test_masked_data_needs_a_mask_token():
    from gptdeploy.data import MaskedPretrainData
    from gptdeploy.tokenizer import Tokenizer

    with pytest.raises(DataError, match="no <\\|mask\\|> token"):
        MaskedPretrainData(SAMPLE_TEXT * 40, Tokenizer.train(SAMPLE_TEXT, 300), 32, 4)
