"""The ACT policy: an Action Chunking Transformer that exports to ONNX with normalization inside.

Example:
    >>> policy = ACT(config=ACTConfig(chunk_size=10))
    >>> 1_000_000 < sum(p.numel() for p in policy.parameters()) < 5_000_000
    True
    >>> policy(policy.sample_input).shape
    torch.Size([1, 10, 14])
"""

from __future__ import annotations

from getiaction.export import Export
from getiaction.policies.act.config import ACTConfig
from getiaction.policies.act.model import ACTModel
from getiaction.policies.base import Policy


class ACT(Export, Policy):
    """Camera images and a state vector in, a chunk of future actions out."""

    def __init__(self, config: ACTConfig | None = None) -> None:
        super().__init__()
        self.model = ACTModel(config or ACTConfig())
