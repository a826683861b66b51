"""Golden references and parity for encoders: texts with masks, the reference's logits and class scores on them.

The encoder's counterpart of `golden.py` and `parity.py`: computed once from the PyTorch checkpoint at export, stored
in the bundle's `golden.npz` (plain arrays), and every later artifact is measured against it with the same
per-precision tolerances. An encoder has no cache and no decoding loop, so parity is: the logits at every real
position (max/mean abs diff, KL, top-1 agreement), fill-mask's top-k at the masks and the class label of each text
(identical, unless the reference itself is at a near-tie), and a batch of padded texts against each text alone.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptdeploy.encoder import CLASS_SCORES, LOGITS, Encoder, encode_texts, softmax
from gptdeploy.errors import BundleError
from gptdeploy.fileio import atomic_write
from gptdeploy.parity import TOLERANCES, ParityReport, Tolerance
from gptdeploy.tokenizer import MASK

TOP_K = 5  # fill-mask's default: the predictions compared at every mask


def encoder_golden_texts(sentences: Sequence[str], count: int = 6) -> list[str]:
    """Held-out sentences with their last word masked, and one with a mask in the middle."""
    texts = ["Mia lives in <|mask|>."]
    for sentence in list(sentences)[:count]:
        words = sentence.rstrip(".?!").split(" ")
        texts.append(" ".join([*words[:-1], MASK]) + sentence[len(sentence.rstrip(".?!")) :])
    return texts


@dataclass(frozen=True)
class EncoderGolden:
    texts: list[str]
    input_ids: np.ndarray  # (B, T) int64, bos + text, right-padded
    attention_mask: np.ndarray  # (B, T) int64
    logits: np.ndarray  # (B, T, vocab) float32
    class_scores: np.ndarray | None  # (B, labels) float32, None without a head


def compute_encoder_golden(encoder: Encoder, texts: Sequence[str]) -> EncoderGolden:
    input_ids, mask = encode_texts(encoder.tokenizer, texts, encoder.info.max_seq_len)
    outputs = encoder.run(input_ids, mask)
    return EncoderGolden(list(texts), input_ids, mask, outputs[LOGITS], outputs.get(CLASS_SCORES))


def save_encoder_golden(path: Path, golden: EncoderGolden) -> Path:
    arrays = {"texts": np.array(golden.texts, dtype=str), "input_ids": golden.input_ids,
              "attention_mask": golden.attention_mask, "logits": golden.logits.astype(np.float32)}  # fmt: skip
    if golden.class_scores is not None:
        arrays["class_scores"] = golden.class_scores.astype(np.float32)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as stream:
            np.savez(stream, **arrays)

    return atomic_write(path, write)


def load_encoder_golden(path: Path) -> EncoderGolden:
    try:
        with np.load(path, allow_pickle=False) as data:
            scores = data["class_scores"] if "class_scores" in data.files else None
            return EncoderGolden([str(t) for t in data["texts"]], data["input_ids"], data["attention_mask"],
                                 data["logits"], scores)  # fmt: skip
    except (OSError, KeyError, ValueError) as error:
        raise BundleError(f"cannot read the encoder's golden references {path}: {error}") from error


def _top_k_identical(reference: np.ndarray, test: np.ndarray, near_tie: float) -> bool:
    """Same top-k tokens in the same order, unless the reference's own order is decided by less than `near_tie`."""
    order = np.argsort(-reference, kind="stable")[: TOP_K + 1]
    if np.array_equal(order[:TOP_K], np.argsort(-test, kind="stable")[:TOP_K]):
        return True
    return bool(np.min(-np.diff(reference[order])) < near_tie)


def check_encoder_parity(encoder: Encoder, golden: EncoderGolden, tolerance: Tolerance | None = None) -> ParityReport:
    """Measure `encoder` against the golden references; the report is falsy when any check fails."""
    tolerance = tolerance or TOLERANCES[encoder.info.precision]
    outputs = encoder.run(golden.input_ids, golden.attention_mask)
    real = golden.attention_mask.astype(bool)
    reference, test = golden.logits[real], outputs[LOGITS][real]  # (positions, vocab)
    diff = np.abs(test.astype(np.float64) - reference)
    p, q = softmax(reference), softmax(test)
    with np.errstate(invalid="ignore", divide="ignore"):
        kl = (p * (np.log(p + 1e-30) - np.log(q + 1e-30))).sum(-1)
    scale = max(1.0, float(np.abs(reference).max()))
    non_finite = int((~np.isfinite(outputs[LOGITS])).sum())
    failures = [f"{non_finite} logits are NaN or inf"] if non_finite else []
    mask_id = encoder.tokenizer.mask_id
    identical = 0
    for row in range(len(golden.texts)):
        positions = np.flatnonzero(golden.input_ids[row] == mask_id)
        same = all(_top_k_identical(golden.logits[row, i], outputs[LOGITS][row, i], tolerance.near_tie)
                   for i in positions)  # fmt: skip
        if golden.class_scores is not None:
            same = same and _top_k_identical(golden.class_scores[row], outputs[CLASS_SCORES][row], tolerance.near_tie)
        identical += same
    if golden.class_scores is not None:
        score_diff = float(np.abs(outputs[CLASS_SCORES] - golden.class_scores).max())
        score_scale = max(1.0, float(np.abs(golden.class_scores).max()))
        if not score_diff / score_scale <= tolerance.max_logit_diff:
            failures.append(f"max class score diff {score_diff / score_scale:.2e} of the scale > "
                            f"{tolerance.max_logit_diff:.0e}")  # fmt: skip
    alone_diff = 0.0
    for row in range(len(golden.texts)):
        length = int(golden.attention_mask[row].sum())
        single = encoder.run(golden.input_ids[row : row + 1, :length], golden.attention_mask[row : row + 1, :length])
        alone_diff = max(alone_diff, float(np.abs(single[LOGITS][0] - outputs[LOGITS][row, :length]).max()))
    max_rel, mean_kl, top1 = float(diff.max()) / scale, float(kl.mean()), float((p.argmax(-1) == q.argmax(-1)).mean())
    if not max_rel <= tolerance.max_logit_diff:
        failures.append(f"max logit diff {max_rel:.2e} of the logit scale > {tolerance.max_logit_diff:.0e}")
    if not mean_kl <= tolerance.mean_kl:
        failures.append(f"mean KL {mean_kl:.2e} > {tolerance.mean_kl:.0e}")
    if not top1 >= tolerance.top1_agreement:
        failures.append(f"top-1 agreement {top1:.3f} < {tolerance.top1_agreement}")
    if tolerance.top1_agreement >= 1.0 and identical < len(golden.texts):
        failures.append(f"fill-mask top-{TOP_K} or the label differs from the reference on "
                        f"{len(golden.texts) - identical} of {len(golden.texts)} texts")  # fmt: skip
    batch_ok = alone_diff / scale <= tolerance.max_logit_diff
    if not batch_ok:
        failures.append(f"texts run together differ from each text alone by {alone_diff:.2e}")
    return ParityReport(encoder.info.backend, encoder.info.precision, scale, float(diff.max()), float(diff.mean()),
                        max_rel, mean_kl, top1, identical, len(golden.texts), divergences=[],
                        cache_vs_recompute_max_diff=0.0, batch_matches_single=batch_ok, batch_divergences=[],
                        failures=failures, non_finite_logits=non_finite)  # fmt: skip
