"""The task's tokenizer in a SmolVLA package: an OpenVINO tokenizer checked against LeRobot's own.

A robot running a SmolVLA package needs neither ``transformers`` nor torch to read its task:
physicalai's ``new_line`` step appends ``\\n`` as LeRobot's pre-processor does, its ``ov_tokenizer``
step runs the file :func:`package_tokenizer` writes (made by ``openvino-tokenizers`` from the
policy's own tokenizer) and writes the graph's ``tokenized_prompt`` / ``tokenized_prompt_mask``.
:func:`check_tokenizer` holds the file's ids to LeRobot's on :data:`TOKENIZER_CHECK`.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any

import numpy as np

TOKENIZER_FILE = "openvino_tokenizer.xml"
TOKENIZER_CHECK = {"short": "pick up the cube", "long (truncated)": "stack the red block on the blue block, then " * 12,
                   "non-ASCII": "plie la serviette à côté du bol 🍵", "empty": "", "ends with a newline": "open it\n",
                   "tabs and spaces": "  push\tthe  T  "}
"""Task strings the packaged tokenizer must tokenize exactly as LeRobot does (checked at export, recorded)."""


def package_tokenizer(module: Any, folder: Path) -> dict[str, Any]:
    """Write the task's tokenizer into the package ``folder`` as an OpenVINO tokenizer; what the manifest declares.

    The robot then needs neither ``transformers`` nor torch: physicalai's ``new_line`` step appends
    ``\\n`` as LeRobot's pre-processor does, its ``ov_tokenizer`` step runs the tokenizer file (made
    by ``openvino-tokenizers``'s ``convert_tokenizer`` from LeRobot's own tokenizer, right padding
    and truncation to the graph's ``tokenizer_max_length``) and writes ``tokenized_prompt`` /
    ``tokenized_prompt_mask``, the graph's task inputs. The file's ids and mask are checked equal to
    LeRobot's (:meth:`SmolVLAInference.tokenize`) on :data:`TOKENIZER_CHECK`, one at a time and as
    one batch; a difference raises (no package ships a tokenizer that disagrees).

    ``module``: a :class:`~getiaction_export.sources.smolvla.SmolVLAExport`. Returns ``{"preprocessors":
    [...manifest entries, in order...], "files": [...], "check": {...}}``.
    """
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer

    reference: Any = module.parity_reference
    step = reference.tokenizer_step
    tokenizer = copy.deepcopy(step.input_tokenizer)
    tokenizer.padding_side = step.padding_side  # LeRobot pads on the side its step names, whatever the tokenizer says
    quiet = io.StringIO()  # it prints "Convert Huggingface Fast tokenizer pipeline."
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        model = convert_tokenizer(tokenizer, with_detokenizer=False, use_max_padding=True,
                                  truncation=bool(step.truncation), max_length=reference.token_length)
    path = Path(folder) / TOKENIZER_FILE
    ov.save_model(model, str(path))
    check = check_tokenizer(reference, path)
    return {"preprocessors": [{"type": "new_line"}, {"type": "ov_tokenizer", "artifact": TOKENIZER_FILE}],
            "files": [TOKENIZER_FILE, path.with_suffix(".bin").name], "check": check}


def check_tokenizer(reference: Any, path: Path) -> dict[str, Any]:
    """The OpenVINO tokenizer at ``path`` against LeRobot's ids on :data:`TOKENIZER_CHECK`; raises on a difference."""
    import openvino as ov
    import openvino_tokenizers  # noqa: F401  (registers the tokenizer operations with OpenVINO)

    from getiaction.errors import VerificationError

    compiled = ov.Core().compile_model(str(path), "CPU")
    names, texts = list(TOKENIZER_CHECK), list(TOKENIZER_CHECK.values())
    batches = [[text] for text in texts] + [texts]
    for batch in batches:
        given = [text if text.endswith("\n") else f"{text}\n" for text in batch]  # physicalai's new_line step
        outputs = compiled(given)
        ids, mask = np.asarray(outputs["input_ids"]), np.asarray(outputs["attention_mask"]).astype(bool)
        expected_ids, expected_mask = reference.tokenize(batch)
        if not (np.array_equal(ids, expected_ids.numpy()) and np.array_equal(mask, expected_mask.numpy())):
            which = names[texts.index(batch[0])] if len(batch) == 1 else "all of them in one batch"
            raise VerificationError(f"the OpenVINO tokenizer's ids differ from LeRobot's on the {which} task string; "
                                    "the package would read the task differently")
    return {"tokenizer": TOKENIZER_FILE, "max_length": reference.token_length, "tasks": dict(TOKENIZER_CHECK),
            "ids_equal_lerobot": True, "batched": True}
