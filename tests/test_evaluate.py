from gptdeploy.corpus.tasks import Example
from gptdeploy.evaluate import exact_match
from tests.helpers import ScriptedRuntime


def test_exact_match_counts_per_task_and_overall(tokenizer):
    runtime = ScriptedRuntime(tokenizer, [*tokenizer.encode(" 5"), tokenizer.eos_id])
    examples = [Example("add", "Q: 2 plus 3?\nA:", " 5"), Example("add", "Q: 2 plus 4?\nA:", " 6"),
                Example("max", "Q: max of 5, 1?\nA:", " 5")]  # fmt: skip
    report = exact_match(runtime, examples)
    assert report.completions == [" 5", " 5", " 5"]
    assert report.per_task == {"add": 0.5, "max": 1.0}
    assert report.accuracy == 2 / 3
