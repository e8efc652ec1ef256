"""A LeRobot SmolVLA ``save_pretrained`` folder as an exportable policy (``policy=lerobot policy.path=DIR``).

SmolVLA is a vision-language-action policy: a SmolVLM (vision tower, connector, the first layers
of its language model) reads the camera frames, the task's tokens and the state once; an action
expert then turns start noise into an action chunk in ``num_steps`` flow-matching (Euler) steps,
attending to that prefix's key/value cache. :func:`smolvla` loads the folder with LeRobot's own
loaders (as :mod:`.lerobot` does for ACT and Diffusion) and gives:

- **the exported module** (:class:`SmolVLAExport`): the whole inference in one graph. Inputs, one
  per camera and the state under LeRobot's names, the task under physicalai's (its ``hf_tokenizer``
  / ``ov_tokenizer`` steps write them):

  ================================  ======================================  =================================
  ``observation.images.<camera>``   ``(B, 3, H, W)`` float32 in [0, 1]      raw frames; resize with padding
                                                                            to ``resize_imgs_with_padding``
                                                                            and the [-1, 1] scaling inside
  ``observation.state``             ``(B, S)`` float32                       raw; normalized inside
  ``tokenized_prompt``              ``(B, L)`` int64                         the task's token ids, padded
                                                                            to ``L = tokenizer_max_length``
  ``tokenized_prompt_mask``         ``(B, L)`` bool                          True on real tokens
  ``noise`` (``noise=input`` only)  ``(B, chunk_size, max_action_dim)``      the start noise
  ================================  ======================================  =================================

  Outputs: ``action`` ``(B, chunk_size, A)`` raw (un-normalized inside) and, by default, ``noise``.
  The flow-matching loop is unrolled (``num_steps`` expert passes on one prefix cache). LeRobot's
  own modules are traced (vision tower, connector, language layers, expert); four pieces of its
  inference are restated so the exporters write a valid, exact graph, each computing the same
  numbers: the attention masks' ``cumsum`` runs on int64 (the TorchScript exporter writes
  ``CumSum`` on bool, which no runtime accepts); the prefix offsets are summed on int64; the
  vision tower's patch position ids (a per-row ``bucketize`` over a data-dependent ``arange`` in
  transformers) are computed once, eagerly, by the tower's own code in its own dtype, and stored
  (a static ``arange`` is *not* the same: at 512 px the ids per axis are ``[0, 0, 1, ..., 30]``);
  and each step's time is one row, not one per batch row, so its sinusoidal embedding (float64 in
  LeRobot) folds into a constant at export instead of a float64 subgraph that OpenVINO computes
  in float32 (tiny policy: OpenVINO f32 1.1e-5 -> 9.5e-7 from LeRobot). The export runs on a copy
  of the policy that shares its weights; the reference keeps LeRobot's code.
- **the parity reference** (:class:`SmolVLAInference`): LeRobot's own pre-processor (its
  normalizer; the task is given as token ids) → ``predict_action_chunk(noise=...)`` → its
  post-processor, on the same raw observation. :meth:`SmolVLAInference.from_task` is the same
  from a task string (LeRobot's newline step and tokenizer at its own ``padding="longest"``):
  the fixed-length ids of :meth:`SmolVLAInference.tokenize` give the same actions.

**The start noise** (``noise``). LeRobot draws fresh noise for every chunk, so a graph that draws
its own is what a robot must run, and a graph that takes it is what can be compared with LeRobot
exactly. Both exist:

- ``noise=graph`` (default): the graph draws the start noise itself (``torch.randn`` →
  ``RandomNormalLike`` in ONNX, a fresh draw every call in onnxruntime and OpenVINO) and returns
  it as a second output ``noise``, so every call says which noise its ``action`` belongs to.
  The reference is **conditioned on that output**: :attr:`SmolVLAInference.conditioned_on` maps
  the graph output ``noise`` to the reference input ``noise``; a gate that runs the candidate
  first and feeds its ``noise`` output to the reference compares ``action`` with LeRobot's action
  *for the noise the graph drew* (within the fp32 gate), and ``noise`` with itself (the reference
  returns the noise it was given). Without that noise (e.g. the float64 run that fits the fp32
  bound) the reference draws a fixed seeded noise, the same for float32 and float64.
- ``noise=input``: the graph takes ``noise`` as an input (for your own sampler, or any check that
  compares with LeRobot given the same noise); its outputs are ``action`` only and the reference
  passes the same ``noise`` to ``predict_action_chunk``. A deterministic function, so every
  stage of the pipeline (gate, fp32 fit, reference set, runtime check) holds it to LeRobot as is.

**Exporter.** Both work on this graph once the pieces above are restated. TorchScript
(opset 17 or 18; what ``format.exporter=auto``, the default, picks for it) is the one to use: the tiny test policy
exports in ~3 s at 9.5e-7 from LeRobot, each weight stored once however many steps are unrolled.
dynamo (``format.exporter=dynamo``) takes ~15 s at 3.8e-6, and its ``optimize=True`` (the
app's) gives unrolled steps their own transposed copies of the expert's weights (1.3x the
weights here at 3 steps; 19 min to export at real size, ``../shared/FACTS.md``).

**Loading offline.** Building a SmolVLA always reads its VLM's config and processor by
``vlm_model_name`` (a hub id for a real checkpoint) and its pre-processor loads the tokenizer by
the same name. When that is not in the Hugging Face cache and there is no network, the error is
one line naming what is missing and ``policy.vlm_path=DIR`` (a local copy: config.json,
processor and tokenizer files), which overrides both. The VLM's weights always come from the
folder's ``model.safetensors`` (``load_vlm_weights`` is turned off: nothing is downloaded).
Weights stored in another dtype (SmolVLM2's bfloat16) are cast to float32 before both the export
and the reference, so the fp32 gate compares like with like.

Not supported yet (one line each): ``adapt_to_pi_aloha``, real-time chunking (``rtc_config``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from getiaction.errors import ConfigError
from getiaction_export.sources.lerobot_folder import Stats, load_folder, normalizer_step

NOISE_MODES = ("graph", "input")
"""``graph``: the graph draws its start noise and returns it as ``noise``; ``input``: it takes ``noise``."""
STATE = "observation.state"
TOKENS, TOKEN_MASK = "tokenized_prompt", "tokenized_prompt_mask"
"""The graph's task inputs, under the names physicalai's tokenizer pre-processors write."""
NOISE = "noise"
SAMPLE_TASK = "pick up the cube and place it in the box"
REFERENCE_NOISE_SEED = 0
"""Seed of the reference's own noise when it is not given one (``noise=graph`` outside the gate)."""
LEROBOT_TOKENS, LEROBOT_TOKEN_MASK = "observation.language.tokens", "observation.language.attention_mask"


def smolvla(folder: Path, noise: str = "graph", vlm_path: str | None = None) -> SmolVLAExport:
    """Load the SmolVLA saved in ``folder`` as a :class:`SmolVLAExport` (see the module doc)."""
    if noise not in NOISE_MODES:
        raise ConfigError(f"policy.noise: {noise!r} is not valid; use graph (the graph draws the start noise and "
                          "returns it) or input (the graph takes it)")
    policy, pre, post = _load(folder, vlm_path)
    config = policy.config
    if config.adapt_to_pi_aloha:
        raise ConfigError("policy.path: SmolVLA with adapt_to_pi_aloha=true is not supported yet")
    if config.rtc_config is not None and config.rtc_config.enabled:
        raise ConfigError("policy.path: SmolVLA with real-time chunking (rtc_config.enabled) is not supported yet")
    reference = SmolVLAInference(policy, pre, post, noise)
    return SmolVLAExport(policy, reference, noise)


def _load(folder: Path, vlm_path: str | None) -> tuple[Any, Any, Any]:
    """LeRobot's policy (eval, CPU, float32) and pre/post-processors; VLM and tokenizer from ``vlm_path`` if given."""

    def configure(config: Any) -> None:
        config.load_vlm_weights = False  # every weight is in the folder's model.safetensors
        if vlm_path:
            config.vlm_model_name = str(vlm_path)
        _check_vlm(config.vlm_model_name, "policy.vlm_path" if vlm_path else "policy.path")

    overrides = {"tokenizer_processor": {"tokenizer_name": str(vlm_path)}} if vlm_path else {}
    policy, pre, post = load_folder(folder, configure, overrides)
    return policy.to(torch.float32), pre, post


def _check_vlm(name: str, key: str) -> None:
    """One line when the VLM's config or processor (tokenizer included) cannot be read offline from ``name``."""
    from transformers import AutoConfig, AutoProcessor

    loaders = (("config", AutoConfig.from_pretrained), ("processor and tokenizer", AutoProcessor.from_pretrained))
    for what, load in loaders:
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                load(name)
        except (OSError, ValueError) as error:
            local = Path(name).is_dir()
            where = (f"the folder {name} has no readable VLM {what}" if local else
                     f"the VLM {name!r} (the policy's vlm_model_name) has no {what} in the Hugging Face cache and "
                     "cannot be downloaded offline")
            raise ConfigError(f"{key}: {where}; add policy.vlm_path=DIR, a local copy of the VLM (its config.json, "
                              f"processor and tokenizer files) ({type(error).__name__})") from error


def _shared_copy(module: nn.Module) -> Any:
    """A deep copy of ``module``'s structure that shares its parameters and buffers (no second set of weights)."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    return copy.deepcopy(module, memo={id(tensor): tensor for tensor in tensors})


class StaticPatchPositions(nn.Module):
    """SmolVLM's vision embeddings with the patch position ids computed once, per image size, by its own code.

    transformers computes them per row from the patch mask (``bucketize`` over an ``arange`` of a
    data-dependent length), which the exporters cannot trace; with every patch real (SmolVLA
    passes no patch mask) they depend only on the image size, so running the original module once
    on a blank image of each size, in the tower's dtype, gives exactly the ids it uses.
    """

    patch_embedding: nn.Conv2d
    position_embedding: nn.Embedding

    def __init__(self, embeddings: Any, sizes: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        self.patch_embedding, self.position_embedding = embeddings.patch_embedding, embeddings.position_embedding
        patch = int(embeddings.patch_size)
        dtype = self.patch_embedding.weight.dtype
        for height, width in sorted(set(sizes)):
            captured: list[torch.Tensor] = []
            hook = self.position_embedding.register_forward_pre_hook(
                lambda _, args, into=captured: into.append(args[0]))
            try:
                with torch.no_grad():
                    embeddings(torch.zeros(1, 3, height, width, dtype=dtype),
                               torch.ones(1, height // patch, width // patch, dtype=torch.bool))
            finally:
                hook.remove()
            self.register_buffer(self._name(height, width), captured[0].clone(), persistent=False)

    @staticmethod
    def _name(height: int, width: int) -> str:
        return f"position_ids_{height}x{width}"

    def forward(self, pixel_values: torch.Tensor, patch_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        ids = getattr(self, self._name(int(pixel_values.shape[-2]), int(pixel_values.shape[-1])))
        embeddings: torch.Tensor = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        return embeddings + self.position_embedding(ids)


def _attention_2d(pad_masks: torch.Tensor, att_masks: torch.Tensor) -> torch.Tensor:
    """LeRobot's ``make_att_2d_masks`` with its ``cumsum`` on int64 and the pad product as ``&`` (bool)."""
    cumsum = torch.cumsum(att_masks.to(torch.int64), dim=1)
    att_2d = cumsum[:, None, :] <= cumsum[:, :, None]
    return att_2d & (pad_masks[:, None, :] & pad_masks[:, :, None])


def _positions(pad_masks: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(pad_masks.to(torch.int64), dim=1) - 1


class FlowMatching(nn.Module):
    """LeRobot's ``VLAFlowMatching.sample_actions`` (no RTC) on a copy whose masks and patch ids trace.

    The same calls in the same order as LeRobot 0.4.4's ``sample_actions`` / ``denoise_step``:
    the prefix (images, task, state) fills the key/value cache once, then ``num_steps`` Euler
    steps of the action expert from ``noise`` at t = 1 down to 0.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        config: Any = model.config
        self.steps, self.chunk, self.use_cache = int(config.num_steps), int(config.chunk_size), bool(config.use_cache)

    def forward(self, images: list[torch.Tensor], image_masks: list[torch.Tensor], tokens: torch.Tensor,
                token_mask: torch.Tensor, state: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        model: Any = self.model
        prefix, prefix_pad, prefix_att = model.embed_prefix(images, image_masks, tokens, token_mask, state=state)
        _, cache = model.vlm_with_expert.forward(attention_mask=_attention_2d(prefix_pad, prefix_att),
                                                 position_ids=_positions(prefix_pad), past_key_values=None,
                                                 inputs_embeds=[prefix, None], use_cache=self.use_cache,
                                                 fill_kv_cache=True)
        size = state.shape[0]
        offsets = torch.sum(prefix_pad.to(torch.int64), dim=-1)[:, None]
        dt = -1.0 / self.steps
        x_t = noise
        for step in range(self.steps):
            timestep = torch.tensor([1.0 + step * dt], dtype=torch.float32)  # one row: its embedding is a constant
            suffix, suffix_pad, suffix_att = model.embed_suffix(x_t, timestep)
            prefix_2d = prefix_pad[:, None, :].expand(size, suffix_pad.shape[1], prefix_pad.shape[1])
            mask = torch.cat([prefix_2d, _attention_2d(suffix_pad, suffix_att)], dim=2)
            out, _ = model.vlm_with_expert.forward(attention_mask=mask, position_ids=offsets + _positions(suffix_pad),
                                                   past_key_values=cache, inputs_embeds=[None, suffix],
                                                   use_cache=self.use_cache, fill_kv_cache=False)
            velocity = model.action_out_proj(out[1][:, -self.chunk :].to(torch.float32))
            x_t = x_t + dt * velocity
        return x_t


def _traceable_copy(policy: Any) -> Any:
    """The policy (sharing its weights) with the vision tower's patch ids precomputed: :class:`StaticPatchPositions`."""
    config = policy.config
    exported = _shared_copy(policy)
    vision = exported.model.vlm_with_expert.get_vlm_model().vision_model
    if config.resize_imgs_with_padding is not None:
        width, height = config.resize_imgs_with_padding
        sizes = [(int(height), int(width))]
    else:
        sizes = [(int(feature.shape[-2]), int(feature.shape[-1])) for feature in config.image_features.values()]
    vision.embeddings = StaticPatchPositions(vision.embeddings, sizes)
    return exported


def cameras(config: Any) -> list[str]:
    """The image inputs a robot feeds: the config's image features without LeRobot's blank ``empty_camera_*``."""
    return [key for key in config.image_features if ".empty_camera_" not in key]


class SmolVLAExport(nn.Module):
    """What is exported: raw observation + task tokens (+ noise) in, raw action chunk (+ the noise drawn) out."""

    task_input_names = (TOKENS, TOKEN_MASK)
    """The inputs a task string becomes (:meth:`task_inputs`): a rollout feeds them from ``rollout.task``."""
    preferred_exporter = "torchscript"
    """What ``format.exporter=auto`` uses (see the module doc: weights stored once, 9.5e-7 from LeRobot, ~3 s)."""
    preferred_int8 = "weights"  # format.calibration.method=auto (getiaction.export.int8)
    preferred_int8_reason = "SmolVLA's choice: its transformer quantization does not compile in OpenVINO"

    def __init__(self, policy: Any, reference: SmolVLAInference, noise: str) -> None:
        super().__init__()
        config = policy.config
        self.exported = _traceable_copy(policy)
        self.step = FlowMatching(self.exported.model)
        self.normalize, self.unnormalize = Stats(reference.normalizer), Stats(reference.unnormalizer)
        self.config = None  # LeRobot's config is in the folder; the checkpoint format stores weights only
        # the gate compares the graph with LeRobot's own pipeline, not with this module (see module doc)
        object.__setattr__(self, "parity_reference", reference)
        self.noise_mode = noise
        self.cameras = cameras(config)
        self.noise_shape = (int(config.chunk_size), int(config.max_action_dim))
        self.action_size = int(config.action_feature.shape[0])
        self.rows, self.token_length = reference.rows, reference.token_length
        self.input_shapes = {STATE: tuple(config.robot_state_feature.shape),
                             **{key: tuple(config.image_features[key].shape) for key in self.cameras}}

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        observation = {key: self.normalize(key, batch[key]) for key in (STATE, *self.cameras)}
        policy: Any = self.exported
        images, image_masks = policy.prepare_images(observation)
        state = policy.prepare_state(observation)
        size = state.shape[0]
        noise = batch[NOISE] if self.noise_mode == "input" else torch.randn(size, *self.noise_shape)
        actions = self.step(images, image_masks, batch[TOKENS], batch[TOKEN_MASK], state, noise)
        action = self.unnormalize("action", actions[:, : self.rows, : self.action_size], inverse=True)
        return action if self.noise_mode == "input" else {"action": action, NOISE: noise}

    def package_extras(self, folder: Path) -> dict[str, Any]:
        """What a package of this graph carries besides the model: the task's tokenizer (``package_tokenizer``)."""
        from getiaction_export.sources.smolvla_tokenizer import TOKENIZER_CHECK, package_tokenizer

        return {**package_tokenizer(self, folder),
                "task": {"inputs": [TOKENS, TOKEN_MASK], "tasks": list(TOKENIZER_CHECK.values())}}

    def task_inputs(self, tasks: Sequence[str]) -> dict[str, torch.Tensor]:
        """The graph's task inputs for ``tasks`` as LeRobot tokenizes them (:meth:`SmolVLAInference.tokenize`)."""
        reference: Any = self.parity_reference
        tokens, mask = reference.tokenize(tasks)
        return {TOKENS: tokens, TOKEN_MASK: mask}

    @property
    def sample_input(self) -> dict[str, torch.Tensor]:
        """One raw observation (batch 1): state around the stats, frames in [0, 1], a real task's tokens."""
        generator = torch.Generator().manual_seed(0)
        sample = {STATE: torch.rand((1, *self.input_shapes[STATE]), generator=generator) * 4 - 2}
        sample.update({key: torch.rand((1, *self.input_shapes[key]), generator=generator) for key in self.cameras})
        sample.update(self.task_inputs([SAMPLE_TASK]))
        if self.noise_mode == "input":
            sample[NOISE] = torch.randn((1, *self.noise_shape), generator=generator)
        return sample


class SmolVLAInference(nn.Module):
    """LeRobot's own SmolVLA inference on the graph's inputs: pre-processor → ``predict_action_chunk`` → post-processor.

    The task comes as the graph takes it (token ids and mask); LeRobot's pre-processor runs without
    its newline and tokenizer steps, which :meth:`tokenize` applies instead (and
    :meth:`from_task` runs the whole pipeline on a task string). ``noise=graph``: see
    :attr:`conditioned_on` and the module doc.
    """

    conditioned_on: dict[str, str]
    """Graph output -> reference input: a gate feeds the candidate's drawn ``noise`` back as this input."""

    def __init__(self, policy: Any, pre: Any, post: Any, noise: str) -> None:
        super().__init__()
        self.policy, self.pre, self.post, self.noise_mode = policy, pre, post, noise
        self.normalizer = normalizer_step(pre, "policy_preprocessor")
        self.unnormalizer = normalizer_step(post, "policy_postprocessor")
        tokenizers = [step for step in pre.steps if type(step).__name__ == "TokenizerProcessorStep"]
        newlines = [step for step in pre.steps if type(step).__name__ == "SmolVLANewLineProcessor"]
        if not tokenizers:
            raise ConfigError("policy.path: the policy_preprocessor has no tokenizer step; SmolVLA needs one")
        self.tokenizer_step, self.newline_steps = tokenizers[0], newlines
        self.token_length = int(self.tokenizer_step.max_length)
        kept = [step for step in pre.steps if step is not self.tokenizer_step and step not in newlines]
        self.pre_tokenized = dataclasses.replace(pre, steps=kept)
        config = policy.config
        self.features = [STATE, *cameras(config)]
        self.noise_shape = (int(config.chunk_size), int(config.max_action_dim))
        self.rows = int(min(config.n_action_steps, config.chunk_size))
        """The actions LeRobot's select_action plays of a chunk (``n_action_steps``): what the graph returns."""
        self.conditioned_on = {NOISE: NOISE} if noise == "graph" else {}

    def tokenize(self, tasks: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``(B, L)`` int64 and mask ``(B, L)`` bool as LeRobot makes them, padded to the graph's length:
        its newline step (a trailing ``\\n`` unless there is one), then its tokenizer (right padding, truncation at
        ``L = tokenizer_max_length``) at ``padding="max_length"``."""
        texts: Any = list(tasks)
        for step in self.newline_steps:
            texts = step.complementary_data({"task": texts})["task"]
        step = self.tokenizer_step
        encoded = step.input_tokenizer(texts, max_length=self.token_length, truncation=step.truncation,
                                       padding="max_length", padding_side=step.padding_side, return_tensors="pt")
        return encoded["input_ids"].to(torch.int64), encoded["attention_mask"].to(torch.bool)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> Any:
        observation = {key: batch[key] for key in self.features}
        observation[LEROBOT_TOKENS], observation[LEROBOT_TOKEN_MASK] = batch[TOKENS], batch[TOKEN_MASK]
        noise = batch.get(NOISE)
        if noise is None:  # noise=graph without the candidate's draw: a fixed one, the same in the float64 fit's run
            draw = np.random.default_rng(REFERENCE_NOISE_SEED).standard_normal(
                (batch[STATE].shape[0], *self.noise_shape), dtype=np.float32)
            noise = torch.from_numpy(draw).to(batch[STATE].dtype)
        action = self._infer(self.pre_tokenized, observation, noise)
        return action if self.noise_mode == "input" else {"action": action, NOISE: noise}

    def from_task(self, observation: Mapping[str, torch.Tensor], tasks: Sequence[str],
                  noise: torch.Tensor) -> torch.Tensor:
        """LeRobot's whole inference from a task string: ``post(predict_action_chunk(pre({**obs, task}), noise))``."""
        return self._infer(self.pre, {**{key: observation[key] for key in self.features}, "task": list(tasks)}, noise)

    def _infer(self, pre: Any, observation: dict[str, Any], noise: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            processed = pre(observation)
            inputs = {k: v for k, v in processed.items() if isinstance(v, torch.Tensor) and k != "action"}
            self.policy.reset()
            return self.post(self.policy.predict_action_chunk(inputs, noise=noise)[:, : self.rows])
