"""One error hierarchy: every failure a user can cause is a `GptDeployError` with a one-line message.

The CLI turns these into `Error: ...` and a non-zero exit. Foreign exceptions (ONNX Runtime, onnx, tokenizers, torch,
numpy) raised while handling user input are translated into these where they happen; anything else is a bug, which
the CLI reports in one line too (its traceback with `gptdeploy --debug`).
"""


class GptDeployError(Exception):
    """Base class: the message is one line that names the problem and, where there is one, the fix."""


class ConfigError(GptDeployError):
    """A model, training or generation setting is invalid or inconsistent."""


class DataError(GptDeployError):
    """Training or fine-tuning data is missing or malformed."""


class CheckpointError(GptDeployError):
    """A checkpoint folder is missing, incomplete, corrupt or from an incompatible version."""


class TokenizerError(GptDeployError):
    """A tokenizer file is missing or unusable."""


class TrainingError(GptDeployError):
    """Training cannot go on (diverged loss, ranks out of sync, distributed setup failed)."""


class GenerationError(GptDeployError):
    """A generation request is invalid: bad sampling parameters, an empty prompt, a prompt too long."""


class NonFiniteLogitsError(GenerationError):
    """A model produced NaN or inf logits: broken weights, or a precision that overflows."""


class ContextOverflowError(GenerationError):
    """More tokens were fed to a runtime than its maximum sequence length holds."""


class BackendError(GptDeployError):
    """A runtime backend cannot be used: its library is missing, or the model folder does not suit it."""


class BundleError(GptDeployError):
    """A bundle is missing, incomplete, corrupt, edited, or from an incompatible version."""


class ExportError(GptDeployError):
    """A checkpoint could not be turned into an artifact, or the artifact failed its parity check."""


class ServerError(GptDeployError):
    """The HTTP server cannot take a request now (loading, draining, queue full) or cannot start."""
