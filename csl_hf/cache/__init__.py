"""The CSL cache: the seam between the labeling pass and the rounds (format in docs/cache.md).

* `format`: `CSLCache`, read, written and validated (safetensors + ``cache.json``);
* `schema`: the key-by-key check of ``cache.json``;
* `labeling`: the one pass that decodes every image once and runs every teacher and the student's backbone on it;
* `reuse`: a run's ``OUTPUT_DIR/cache`` reused when it was labeled from the same teachers, student and data;
* `hub`: a cache in a Hub dataset repo (`CSLCache.push_to_hub`, `CSLCache.from_pretrained`) with its dataset card.
"""

from .format import TEST_SPLIT, TRAIN_SPLIT, CSLCache

__all__ = ["CSLCache", "TEST_SPLIT", "TRAIN_SPLIT"]
