"""Chat templates: our fine-tuning format by default, carried in tokenizer_config.json, rendered in a sandbox."""

import json

import pytest
from click.testing import CliRunner

from gptdeploy.chat_template import ChatTemplate
from gptdeploy.checkpoint import save_checkpoint
from gptdeploy.cli import main
from gptdeploy.errors import GenerationError, TokenizerError
from gptdeploy.tokenizer import DEFAULT_CHAT_TEMPLATE, Tokenizer
from tests.helpers import tiny_model


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_the_default_template_is_the_fine_tuning_format(tokenizer):
    template = ChatTemplate(tokenizer)
    assert template.render([user("What is 12 plus 30?")]) == "Q: What is 12 plus 30?\nA:"
    prompt = template.render([{"role": "system", "content": "Be brief."}, user("a"), assistant(" 42"), user("b")])
    assert prompt == "Be brief.\nQ: a\nA: 42<|eos|>Q: b\nA:"
    assert tokenizer.encode(prompt).count(tokenizer.eos_id) == 1  # the answer ends with the real eos token
    assert template.render([user("a")], add_generation_prompt=False) == "Q: a\n"


def test_a_checkpoint_carries_its_template_in_tokenizer_config(tmp_path, tokenizer):
    save_checkpoint(tmp_path / "default", tiny_model(), tokenizer)
    written = json.loads((tmp_path / "default" / "tokenizer_config.json").read_text())
    assert written["chat_template"] == DEFAULT_CHAT_TEMPLATE and written["eos_token"] == "<|eos|>"

    own = Tokenizer(tokenizer.backend, chat_template="{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}")
    save_checkpoint(tmp_path / "own", tiny_model(), own)
    loaded = Tokenizer.load(tmp_path / "own")
    assert ChatTemplate(loaded).render([user("hi")]) == "<user>hi"


def test_a_folder_without_tokenizer_config_has_the_default_template(tmp_path, tokenizer):
    tokenizer.save(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()
    assert Tokenizer.load(tmp_path).chat_template == DEFAULT_CHAT_TEMPLATE


def test_a_leading_bos_from_the_template_is_left_to_the_engine(tokenizer):
    template = ChatTemplate(tokenizer, "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}")
    assert template.render([user("x")]) == "[x]"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "refused the conversation"),
        ("{{ raise_exception('only user turns') }}", "only user turns"),
        ("{% for m in messages %}{% endfor %}", "empty prompt"),
    ],
    ids=["sandbox", "raise_exception", "empty"],
)
def test_a_template_that_fails_or_escapes_is_a_generation_error(tokenizer, source, message):
    with pytest.raises(GenerationError, match=message):
        ChatTemplate(tokenizer, source).render([user("x")])


def test_a_template_that_is_not_jinja_is_refused(tokenizer):
    with pytest.raises(TokenizerError, match="not valid Jinja"):
        ChatTemplate(tokenizer, "{% for %}")


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "non-empty list"),
        ([{"role": "robot", "content": "x"}], r"messages\[0\].role must be one of"),
        ([user("x"), {"role": "user", "content": 3}], r"messages\[1\].content must be text"),
    ],
)
def test_malformed_messages_are_named(tokenizer, messages, message):
    with pytest.raises(GenerationError, match=message):
        ChatTemplate(tokenizer).render(messages)


def test_text_parts_are_joined(tokenizer):
    parts = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    assert ChatTemplate(tokenizer).render([parts]) == "Q: ab\nA:"


def test_fit_drops_the_oldest_turns_and_keeps_the_system_message(tokenizer):
    template = ChatTemplate(tokenizer)
    system = {"role": "system", "content": "Answer."}
    history = [system, user("one two"), assistant("three"), user("four five"), assistant("six"), user("seven")]
    assert template.fit(history, 1000) == history
    limit = template.prompt_tokens([system, user("four five"), assistant("six"), user("seven")])
    assert template.fit(history, limit) == [system, user("four five"), assistant("six"), user("seven")]
    assert template.fit(history, limit - 1) == [system, user("seven")]
    with pytest.raises(GenerationError, match="the last message makes a prompt of"):
        template.fit(history, 3)


@pytest.fixture(scope="module")
def chat_checkpoint(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("chat") / "model"
    save_checkpoint(path, tiny_model(), tokenizer)
    return path


def test_chat_sends_the_history_through_the_template(chat_checkpoint, tmp_path):
    counting = tmp_path / "counting.jinja"  # refuses a third question: proves the earlier turns are in the prompt
    counting.write_text("{% if messages | length > 3 %}{{ raise_exception('history of ' ~ messages | length) }}"
                        "{% endif %}{% for m in messages %}{{ m.content }}\n{% endfor %}")  # fmt: skip
    args = ["chat", str(chat_checkpoint), "--chat-template", str(counting), "--max-new-tokens", "2"]
    assert CliRunner().invoke(main, args, input="a\nb\n\n").exit_code == 0
    result = CliRunner().invoke(main, args, input="a\nb\nc\n\n")
    assert result.exit_code == 1 and "history of 5" in result.output


def test_chat_goes_on_past_a_full_context(chat_checkpoint):
    """128 tokens of context: each turn is about 70 tokens, so the third prompt would overflow with all of them."""
    args = ["chat", str(chat_checkpoint), "--max-new-tokens", "30", "--ignore-eos"]
    result = CliRunner().invoke(main, args, input="Mia lives in Riverton with Tom and a brown dog named Pip\n" * 3)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 3
