import pytest

from gptdeploy.errors import TokenizerError
from gptdeploy.tokenizer import Tokenizer

TEXTS = [
    "plain ascii, with punctuation!?",
    "Grüße aus Köln — naïve café",
    "中文文本测试：你好，世界。",
    "emoji 🚀🔥 and a zero-width joiner 👩‍💻",
    "tabs\tand\nnewlines\r\n  and   spaces ",
    "digits 1234567890 and 3.14159",
]


@pytest.mark.parametrize("text", TEXTS)
def test_any_utf8_text_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_special_tokens_exist_and_are_distinct(tokenizer):
    ids = {tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id}
    assert len(ids) == 3 and max(ids) < tokenizer.vocab_size
    assert tokenizer.encode("hi", bos=True)[0] == tokenizer.bos_id
    assert tokenizer.decode([tokenizer.bos_id, *tokenizer.encode("hi"), tokenizer.eos_id]) == "hi"


def test_digits_are_split_one_per_token(tokenizer):
    assert len(tokenizer.encode("2048")) == 4


def test_learns_merges_up_to_the_vocabulary_size(tokenizer):
    assert tokenizer.vocab_size == 320
    assert len(tokenizer.encode("Mia lives in Riverton.")) < len("Mia lives in Riverton.")


def test_save_and_load_give_the_same_ids(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path)
    assert path.name == "tokenizer.json"
    loaded = Tokenizer.load(tmp_path)
    assert loaded.encode(TEXTS[2]) == tokenizer.encode(TEXTS[2])


def test_missing_or_corrupt_file_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot read tokenizer"):
        Tokenizer.load(tmp_path)


def test_too_small_vocabulary_is_refused():
    with pytest.raises(TokenizerError, match="vocab_size must exceed"):
        Tokenizer.train(["abc"], vocab_size=100)


@pytest.mark.parametrize("text", ["hi \udcff there", "\ud800", b"bytes", 3])
def test_text_that_is_not_valid_unicode_is_a_clear_error(tokenizer, text):
    from gptdeploy.errors import GenerationError

    with pytest.raises(GenerationError, match="text is not valid UTF-8|text must be a str"):
        tokenizer.encode(text)
    with pytest.raises(GenerationError, match="text is not valid UTF-8|text must be a str"):
        tokenizer.encode_batch(["fine", text])


def test_a_tokenizer_outside_its_folder_is_not_read(tokenizer, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    tokenizer.save(tmp_path / "elsewhere")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tokenizer.json").symlink_to(tmp_path / "elsewhere" / "tokenizer.json")
    with pytest.raises(TokenizerError, match="tokenizer 'tokenizer.json' resolves to .*outside the folder"):
        Tokenizer.load(tmp_path / "model")
