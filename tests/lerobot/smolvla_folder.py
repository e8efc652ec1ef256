"""Tiny SmolVLA folders built offline: a SmolVLM written from a config, a byte-level BPE tokenizer, LeRobot's save.

A SmolVLA reads its VLM's config, processor and tokenizer by ``vlm_model_name`` whenever it is
built; here that is a local folder :func:`write_vlm` writes (a llama text model of hidden 64 and
2 layers, a SigLIP-like vision tower of width 32 at 64 px with 8 px patches: 16 tokens an image
after the connector's pixel shuffle), with a tokenizer trained on a few task strings by the
``tokenizers`` library (so non-ASCII text still tokenizes: byte-level). No hub, no downloads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>",
                  "<global-img>", "<image>", "<video>")
CORPUS = ("pick up the cube and place it in the box", "push the T-shaped block onto the target",
          "open the top drawer", "fold the towel in half", "stack the red block on the blue block")
VLM_IMAGE, VLM_PATCH = 64, 8


def write_vlm(folder: Path, image_size: int = VLM_IMAGE) -> Path:
    """A tiny SmolVLM (config, processor, tokenizer) in ``folder``: what ``vlm_model_name`` points at."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=400, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<end_of_utterance>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>", model_max_length=512,
        extra_special_tokens={"fake_image_token": "<fake_token_around_image>", "global_image_token": "<global-img>",
                              "image_token": "<image>", "end_of_utterance_token": "<end_of_utterance>"})
    text = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": len(tokenizer),
            "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "pad_token_id": tokenizer.pad_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": image_size, "patch_size": VLM_PATCH}
    SmolVLMConfig(text_config=text, vision_config=vision, scale_factor=2, pad_token_id=tokenizer.pad_token_id,
                  image_token_id=tokenizer.convert_tokens_to_ids("<image>")).save_pretrained(folder)
    size = {"longest_edge": image_size}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size=size, max_image_size=size, do_image_splitting=False),
        tokenizer=tokenizer, video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
        image_seq_len=(image_size // VLM_PATCH) ** 2 // 4)
    processor.save_pretrained(folder)
    return folder


def stats(state: int, action: int) -> dict[str, dict[str, torch.Tensor]]:
    """Made-up stats far from identity (as tests/lerobot/conftest.py's): a lost normalization moves whole units."""
    s, a = torch.arange(state, dtype=torch.float32), torch.arange(action, dtype=torch.float32)
    return {"observation.state": {"mean": 0.5 + 0.1 * s, "std": 2.0 + 0.25 * s, "min": -3.0 - s, "max": 4.0 + 0.5 * s},
            "action": {"mean": -0.2 + 0.3 * a, "std": 1.5 + 0.1 * a, "min": -5.0 + 0.2 * a, "max": 6.0 + 0.7 * a}}


def save_smolvla(folder: Path, vlm: Path, cameras: Mapping[str, Sequence[int]], state: int = 6, action: int = 6,
                 **overrides: Any) -> Path:
    """A SmolVLA on the VLM in ``vlm`` (seeded weights), saved with its processors the way lerobot-train saves it.

    ``cameras``: name -> (3, H, W). ``overrides``: SmolVLAConfig fields (chunk_size, num_steps, ...).
    """
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(state,)),
              **{f"observation.images.{name}": PolicyFeature(type=FeatureType.VISUAL, shape=tuple(shape))
                 for name, shape in cameras.items()}}
    settings: dict[str, Any] = {"resize_imgs_with_padding": (VLM_IMAGE, VLM_IMAGE), "chunk_size": 8,
                                "n_action_steps": 8, "num_steps": 3, "tokenizer_max_length": 16, "max_state_dim": 8,
                                "max_action_dim": 8, **overrides}
    config = SmolVLAConfig(input_features=inputs,
                           output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(action,))},
                           device="cpu", push_to_hub=False, vlm_model_name=str(vlm), load_vlm_weights=False,
                           num_vlm_layers=2, **settings)
    torch.manual_seed(0)
    policy = SmolVLAPolicy(config)
    pre, post = make_pre_post_processors(config, dataset_stats=stats(state, action))
    for part in (policy, pre, post):
        part.save_pretrained(folder)
    return folder
