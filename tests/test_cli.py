"""The CLI end to end on tiny models: results on stdout (text or one JSON document), one-line errors otherwise."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptdeploy.checkpoint import save_checkpoint
from gptdeploy.cli import main
from gptdeploy.corpus.tasks import generate_tasks
from gptdeploy.corpus.world import generate_corpus
from tests.helpers import tiny_model


def run(*args: str, input: str | None = None, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("cli") / "model"
    save_checkpoint(path, tiny_model(), tokenizer)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(generate_corpus(seed=5, target_bytes=60_000).text)
    return path


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    train, heldout = generate_tasks(seed=2, n_train=200, n_heldout_per_task=4)
    for name, examples in (("train", train), ("heldout", heldout)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(e.to_json()) + "\n" for e in examples))
    return folder


def error_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_train_then_finetune_then_evaluate_with_json(tmp_path, corpus, pairs):
    pre = json.loads(run("train", "--out", tmp_path / "pre", "--preset", "tiny", "--data", corpus,
                         "--max-steps", "20", "--batch-size", "4", "--set", "n_layer=1", "--json").stdout)  # fmt: skip
    assert pre["steps"] == 20 and pre["val_loss"] > 0
    fine = json.loads(run("finetune", tmp_path / "pre", "--out", tmp_path / "fine", "--data", pairs / "train.jsonl",
                          "--heldout", pairs / "heldout.jsonl", "--max-steps", "10", "--json").stdout)  # fmt: skip
    assert fine["steps"] == 10 and fine["heldout"]["examples"] == 12
    assert set(fine["heldout"]["per_task"]) == {"add", "sort", "max"}
    evaluated = json.loads(run("evaluate", tmp_path / "fine", "--heldout", pairs / "heldout.jsonl", "--json").stdout)
    assert evaluated == fine["heldout"]
    plotted = json.loads(run("plot", tmp_path / "pre", tmp_path / "fine", "-o", tmp_path / "loss.png", "--json").stdout)
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG" and plotted["plot"] == str(tmp_path / "loss.png")
    records = plotted["runs"][str(tmp_path / "pre")]
    assert [r["step"] for r in records if "val_loss" in r][-1] == 20 and records[-1]["val_loss"] == pre["val_loss"]


def test_data_writes_the_samples_and_reports_them_as_json(tmp_path):
    document = json.loads(run("data", tmp_path, "--seed", "3", "--json").stdout)
    assert set(document["files"]) == {
        "corpus",
        "train",
        "heldout",
        "stats",
        "classify_train",
        "classify_heldout",
        "facts_train",
        "facts_heldout",
    }
    assert all(Path(path).is_file() for path in document["files"].values())
    assert document["stats"]["seed"] == 3 and document["stats"] == json.loads(
        (tmp_path / "corpus_stats.json").read_text()
    )


def test_generate_prints_text_json_and_streams_the_same(checkpoint):
    args = ["generate", checkpoint, "-p", "Mia lives", "--max-new-tokens", "8", "--temperature", "0.8", "--seed", "3"]
    document = json.loads(run(*args, "--json").stdout)
    (result,) = document["results"]
    assert len(result["tokens"]) <= 8 and result["finish_reason"] in ("length", "eos")
    assert run(*args, "--stream").stdout == result["text"] + "\n"
    assert run(*args).stdout == result["text"] + "\n"


def test_generate_takes_a_batch(checkpoint):
    document = json.loads(run("generate", checkpoint, "-p", "a", "-p", "The market", "--json").stdout)
    assert [r["prompt"] for r in document["results"]] == ["a", "The market"]


@pytest.mark.parametrize("typed", ["hello\nagain\n\n", "hello\nagain\n"], ids=["empty line", "end of input"])
def test_chat_answers_each_line_and_ends_cleanly(checkpoint, typed):
    args = ["chat", checkpoint, "--max-new-tokens", "4", "--temperature", "1", "--seed", "1"]
    result = run(*args, input=typed)
    assert result.stdout.count("\n") == 2 and "Aborted" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "{ckpt}", "-p", "hi", "--temperature", "-1"], "temperature must be >= 0"),
        (["generate", "{ckpt}", "-p", "hi", "--top-p", "0"], "top_p must be in (0, 1]"),
        (["generate", "{ckpt}", "-p", ""], "prompt 0 is empty"),
        (["generate", "{ckpt}", "-p", "word " * 300], "more than the model's context of 128"),
        (["generate", "{missing}", "-p", "hi"], "does not exist"),
        (["generate", "{ckpt}", "-p", "hi", "--device", "cuda"], "no CUDA GPU"),
        (["generate", "{ckpt}", "-p", "hi", "--precision", "fp16"], "fp16 runs on CUDA only"),
        (["train", "--out", "{tmp}", "--data", "{missing}"], "does not exist"),
        (["train", "--out", "{tmp}", "--preset", "tiny", "--set", "n_head=3"], "does not divide by n_head"),
        (["train", "--out", "{tmp}", "--preset", "tiny", "--set", "flash=1"], "unknown model config fields"),
        (["train", "--out", "{tmp}", "--preset", "huge"], "unknown preset"),
        (["train", "--out", "{tmp}", "--resume", "--preset", "tiny"], "does not exist"),
        (["finetune", "{ckpt}", "--out", "{tmp}", "--data", "{bad_jsonl}", "--heldout", "{bad_jsonl}"], "line 2"),
        (["finetune", "{ckpt}", "--out", "{tmp}", "--data", "{bad_jsonl}"], "give both --data and --heldout"),
        (["evaluate", "{newer}"], "upgrade gptdeploy"),
    ],
)
def test_bad_input_gives_one_error_line_and_a_nonzero_exit(tmp_path, checkpoint, args, message):
    newer = tmp_path / "newer"
    newer.mkdir()
    config = json.loads((checkpoint / "config.json").read_text())
    (newer / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"prompt": "a", "completion": " b"}\n{"prompt": "a",\n')
    paths = {"ckpt": checkpoint, "missing": tmp_path / "missing", "tmp": tmp_path / "out", "bad_jsonl": bad_jsonl,
             "newer": newer}  # fmt: skip
    result = run(*[a.format(**paths) if "{" in a else a for a in args], ok=False)
    assert message in error_line(result)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_an_unexpected_error_is_one_line_and_debug_shows_its_traceback(checkpoint, monkeypatch):
    from gptdeploy.runtimes import base

    def broken(*args, **kwargs):
        raise ValueError("a bug\nover two lines")

    monkeypatch.setattr(base, "load_runtime", broken)
    result = run("generate", checkpoint, "-p", "hi", ok=False)
    assert error_line(result) == ("Error: unexpected ValueError: a bug over two lines (a bug in gptdeploy: rerun with "
                                  "`gptdeploy --debug ...` for the traceback and report it)")  # fmt: skip
    result = run("--debug", "generate", checkpoint, "-p", "hi", ok=False)
    assert isinstance(result.exception, ValueError)  # --debug lets it through, traceback and all


def test_invalid_utf8_prompts_are_one_error_line(checkpoint):
    """Undecodable argv bytes reach Python as lone surrogates; an undecodable chat line fails to decode."""
    assert "text is not valid UTF-8: character 3" in error_line(
        run("generate", checkpoint, "-p", "hi \udcff", ok=False)
    )
    result = CliRunner().invoke(main, ["chat", str(checkpoint)], input=b"hello \xfe\n")
    assert result.exit_code == 1 and "Traceback" not in result.output  # after the "> " prompt, on the same line here
    assert result.output.count("Error: the line read is not valid UTF-8 (byte 0xfe at 6: invalid start byte)") == 1


def test_training_over_a_checkpoint_needs_resume_or_force_and_keeps_it(checkpoint, tmp_path):
    import shutil

    copy = shutil.copytree(checkpoint, tmp_path / "model")
    weights = (copy / "model.safetensors").read_bytes()
    for args in (["train", "--out", copy, "--preset", "tiny"], ["finetune", copy, "--out", copy]):
        assert "already holds a checkpoint; pass --resume" in error_line(run(*args, "--max-steps", "1", ok=False))
    assert (copy / "model.safetensors").read_bytes() == weights


@pytest.mark.parametrize("overrides", ["n_layer=100000", "vocab_size=100000000000", "block_size=1000000000"])
def test_absurd_model_sizes_are_refused_before_any_work(tmp_path, overrides):
    import time

    started = time.perf_counter()
    line = error_line(run("train", "--out", tmp_path / "big", "--preset", "small", "--set", overrides, ok=False))
    assert "needs about" in line and "more than the" in line and time.perf_counter() - started < 5
    assert not (tmp_path / "big").exists()
