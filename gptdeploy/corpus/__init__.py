"""The shipped synthetic corpus and fine-tuning tasks, generated from seeds (see `world.py` and `tasks.py`)."""
