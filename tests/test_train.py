import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gptdeploy.checkpoint import load_checkpoint, read_config
from gptdeploy.corpus.world import generate_corpus
from gptdeploy.data import read_documents
from gptdeploy.errors import ConfigError, TrainingError
from gptdeploy.stages import pretrain
from gptdeploy.train import TrainConfig

# Small but real: ~300 optimizer steps of the tiny preset take a few seconds.
RUN = TrainConfig(max_steps=300, batch_size=4, warmup_steps=10, eval_interval=100, eval_batches=2,
                  checkpoint_interval=25, log_interval=25)  # fmt: skip


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "world.txt"
    path.write_text(generate_corpus(seed=3, target_bytes=120_000).text, encoding="utf-8")
    return path


def run_pretrain(out_dir: Path, corpus_file: Path, config: TrainConfig = RUN, resume: bool = False):
    return pretrain(out_dir, "tiny", read_documents([corpus_file]), config, resume=resume, progress=False)


def test_pretraining_lowers_the_validation_loss_and_writes_a_checkpoint(corpus_file, tmp_path):
    result = run_pretrain(tmp_path, corpus_file, TrainConfig(**{**RUN.__dict__, "max_steps": 120}))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val_losses = [r["val_loss"] for r in records if "val_loss" in r]
    assert result.steps == 120 and not result.stopped_early
    assert result.val_loss < math.log(512) - 1.0  # a random init predicts uniformly: ln(vocab) nats
    assert val_losses[-1] == pytest.approx(result.val_loss)
    assert result.val_bits_per_char and result.val_bits_per_char < result.val_loss / 0.69
    config, info = read_config(tmp_path)
    assert info["step"] == 120 and info["finished"] and config.n_layer == 2
    assert load_checkpoint(tmp_path).tokenizer.vocab_size == config.vocab_size


@pytest.mark.slow
def test_a_killed_run_resumed_reaches_the_same_weights_as_an_uninterrupted_one(corpus_file, tmp_path):
    reference = run_pretrain(tmp_path / "uninterrupted", corpus_file)
    interrupted = tmp_path / "interrupted"
    code = (
        "import sys; from pathlib import Path; from tests.test_train import RUN, run_pretrain;"
        "run_pretrain(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-c", code, str(interrupted), str(corpus_file)], cwd=root)
    killed_at = None
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        config = interrupted / "config.json"
        if config.exists() and 0 < (step := json.loads(config.read_text())["step"]) < RUN.max_steps:
            os.kill(process.pid, signal.SIGKILL)
            killed_at = step
            break
        time.sleep(0.02)
    process.wait()
    assert killed_at is not None, "the run finished before it could be killed; make it longer"
    resumed = run_pretrain(interrupted, corpus_file, resume=True)
    assert resumed.steps == RUN.max_steps
    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    actual = load_file(interrupted / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert resumed.val_loss == reference.val_loss
    steps = [json.loads(line)["step"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps), "records from after the checkpoint must be dropped on resume"


@pytest.mark.slow
def test_two_process_ddp_trains_and_keeps_ranks_in_sync(corpus_file, tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "gptdeploy", "train", "--out", str(tmp_path), "--preset", "tiny", "--data", str(corpus_file),
        "--max-steps", "30", "--batch-size", "4", "--device", "cpu", "--json",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)  # only rank 0 prints
    assert len(report["rank_checksums"]) == 2
    assert report["rank_checksums"][0] == report["rank_checksums"][1]
    assert report["steps"] == 30 and report["val_loss"] < 6.0
    assert read_config(tmp_path)[1]["step"] == 30


def test_a_time_limit_saves_the_run_as_interrupted_and_resume_finishes_the_plan(corpus_file, tmp_path, caplog):
    """The schedule is the plan's whatever the machine's speed: a cut run is never 'finished', and resuming it
    continues the same learning-rate schedule to the last planned step."""
    cut = TrainConfig(**{**RUN.__dict__, "max_minutes": 1e-4})
    result = run_pretrain(tmp_path, corpus_file, cut)
    assert result.stopped_early and result.steps < RUN.max_steps
    info = read_config(tmp_path)[1]
    assert not info["finished"] and info["interrupted"] and info["step"] == result.steps
    assert info["planned_steps"] == RUN.max_steps
    assert f"after {result.steps} of {RUN.max_steps} planned steps; saved as interrupted" in caplog.text
    finished = run_pretrain(tmp_path, corpus_file, resume=True)
    assert finished.steps == RUN.max_steps and not finished.stopped_early
    info = read_config(tmp_path)[1]
    assert info["finished"] and not info["interrupted"]


def test_divergence_is_reported(corpus_file, tmp_path):
    with pytest.raises(TrainingError, match="lower the learning rate"):
        run_pretrain(tmp_path, corpus_file, TrainConfig(**{**RUN.__dict__, "learning_rate": 1e30}))


def test_bad_training_settings_are_refused():
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="min_learning_rate"):
        TrainConfig(learning_rate=1e-3, min_learning_rate=1e-2)


def test_learning_rate_warms_up_then_decays_to_the_minimum():
    config = TrainConfig(max_steps=100, warmup_steps=10, learning_rate=1.0, min_learning_rate=0.1)
    assert config.lr_at(0) == pytest.approx(0.1)
    assert config.lr_at(9) == pytest.approx(1.0)
    assert config.lr_at(100) == pytest.approx(0.1)
    assert all(config.lr_at(s) >= config.lr_at(s + 1) for s in range(10, 100))


def test_gradient_accumulation_matches_one_big_batch(tokenizer, tmp_path):
    """Two micro-batches of 2 see the same examples as one batch of 4 and report the same loss."""
    from gptdeploy.corpus.tasks import Example
    from gptdeploy.data import FinetuneData
    from gptdeploy.train import train
    from tests.helpers import tiny_model

    examples = [Example("t", f"Q: {a} plus {b}?\nA:", f" {a + b}") for a in range(10, 14) for b in range(20, 23)]
    results = []
    for batch_size, grad_accum in ((4, 1), (2, 2)):
        data = FinetuneData(examples, examples, tokenizer, block_size=64, batch_size=batch_size)
        config = TrainConfig(max_steps=3, batch_size=batch_size, grad_accum=grad_accum, warmup_steps=1,
                             eval_interval=3, learning_rate=1e-3, min_learning_rate=1e-4)  # fmt: skip
        results.append(train(tiny_model(), tokenizer, data, config, tmp_path / str(grad_accum), progress=False))
    single, accumulated = results
    assert accumulated.val_loss == pytest.approx(single.val_loss, rel=1e-3)
    assert accumulated.train_loss == pytest.approx(single.train_loss, rel=1e-3)


def test_a_checkpoint_in_out_is_overwritten_only_with_force_and_continued_only_with_resume(corpus_file, tmp_path):
    from gptdeploy.checkpoint import METRICS_FILE
    from gptdeploy.errors import CheckpointError

    (tmp_path / METRICS_FILE).write_text('{"step": 10}\n')
    with pytest.raises(CheckpointError, match="already holds a checkpoint; pass --resume .* --force to overwrite"):
        run_pretrain(tmp_path, corpus_file)
    assert (tmp_path / METRICS_FILE).read_text() == '{"step": 10}\n'
    short = TrainConfig(**{**RUN.__dict__, "max_steps": 2})
    pretrain(tmp_path, "tiny", read_documents([corpus_file]), short, progress=False, force=True)
    assert read_config(tmp_path)[1]["step"] == 2


def test_resuming_from_a_training_state_with_the_wrong_content_is_a_clear_error(corpus_file, tokenizer, tmp_path):
    from gptdeploy.checkpoint import TRAIN_STATE_FILE, save_checkpoint
    from gptdeploy.errors import CheckpointError
    from tests.helpers import tiny_model

    save_checkpoint(tmp_path, tiny_model(), tokenizer)
    state = {"step": 3, "model": {"wte.weight": torch.zeros(2, 2)}, "optimizer": {}, "rng": torch.get_rng_state()}
    torch.save(state, tmp_path / TRAIN_STATE_FILE)
    with pytest.raises(CheckpointError, match="train_state.pt does not fit this model and optimizer \\(Error"):
        run_pretrain(tmp_path, corpus_file, resume=True)


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, caplog):
    from gptdeploy.train import MetricsLog, read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10, "train_loss": 3.0}\n{"step": 20, "train_loss": 2.5}\n{"step": 30, "trai')
    assert [r["step"] for r in read_metrics(path)] == [10, 20]
    assert "dropping its last line, cut short" in caplog.text
    MetricsLog(path, enabled=True, resume_step=20)
    assert path.read_text() == '{"step": 10, "train_loss": 3.0}\n{"step": 20, "train_loss": 2.5}\n'


def test_a_corrupt_metrics_line_before_the_last_is_named(tmp_path):
    from gptdeploy.errors import DataError
    from gptdeploy.train import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10}\nnot json\n{"step": 30}\n')
    with pytest.raises(DataError, match="metrics.jsonl line 2 is corrupt"):
        read_metrics(path)


def test_masked_lm_pretraining_records_its_objective_and_resumes(corpus_file, tmp_path):
    short = TrainConfig(**{**RUN.__dict__, "max_steps": 20, "checkpoint_interval": 10, "eval_interval": 10})
    documents = read_documents([corpus_file])
    first = pretrain(tmp_path, "tiny", documents, TrainConfig(**{**short.__dict__, "max_steps": 10}), progress=False,
                     objective="mlm", mask_rate=0.2)  # fmt: skip
    config, info = read_config(tmp_path)
    assert not config.causal and info["objective"] == "mlm" and info["mask_rate"] == 0.2
    assert load_checkpoint(tmp_path).tokenizer.mask_id is not None
    assert first.val_unigram_accuracy is not None and first.val_bits_per_char is None
    result = pretrain(tmp_path, "tiny", documents, short, resume=True, progress=False)  # keeps the run's objective
    config, info = read_config(tmp_path)
    assert result.steps == 20 and not config.causal and info["mask_rate"] == 0.2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_unigram_accuracy" in r] == [10, 20]


@pytest.mark.slow
def test_masked_lm_pretraining_beats_the_unigram_baseline(corpus_file, tmp_path):
    config = TrainConfig(max_steps=250, batch_size=16, warmup_steps=20, eval_batches=8, eval_interval=250,
                         checkpoint_interval=250)  # fmt: skip
    result = pretrain(tmp_path, "tiny", read_documents([corpus_file]), config, {"block_size": 64}, progress=False,
                      objective="mlm")  # fmt: skip
    assert result.val_accuracy > result.val_unigram_accuracy + 0.03, result  # context helps beyond token frequency


def test_a_causal_setting_that_contradicts_the_objective_is_refused(corpus_file, tmp_path):
    with pytest.raises(ConfigError, match="contradicts the objective mlm"):
        pretrain(tmp_path, "tiny", read_documents([corpus_file]), RUN, {"causal": True}, objective="mlm")
