"""A LeRobot ``save_pretrained`` folder as an exportable policy (``policy=lerobot policy.path=DIR``).

The folder is what ``lerobot-train`` writes: ``config.json`` and ``model.safetensors`` (the
policy) beside the processor files (``policy_preprocessor*.json/.safetensors``, whose normalizer
step holds the dataset stats). It is loaded with LeRobot's own loaders, and becomes:

- **the exported module** (:class:`LeRobotExport`): raw observations in, raw actions out — the
  inputs normalized with the dataset stats, the policy's inference step, the action chunk
  un-normalized, all inside the graph. Normalization lives in the graph rather than in the
  manifest's ``normalize``/``denormalize`` steps so every runtime (onnxruntime, OpenVINO,
  physicalai, a user's own loop) gets the same numbers from the one file the gate verified, with
  no float64 stats to trip onnxruntime and no second file to lose.
- **the parity reference** (:class:`LeRobotInference`): LeRobot's own pre-processor → policy →
  post-processor on the same raw observations. A lost or wrong normalization therefore fails
  the parity gate; it is not compared with itself.

Inference steps: ACT gives the actions LeRobot's ``select_action`` plays of its chunk, ``(B, n_action_steps,
A)`` (the whole chunk when trained with temporal ensembling, with a warning: LeRobot blends chunks every tick,
which physicalai's queue does not; deterministic in eval).
Diffusion gives ``(B, n_action_steps, A)`` from its full denoising loop; its observations carry
the history axis ``(B, n_obs_steps, ...)``; the start noise is fixed by ``noise_seed`` (stored in
the graph, the same for every batch row), and the scheduler must be deterministic (DDIM): DDPM
draws new noise at every step, so no file can match it; ``noise_scheduler=DDIM`` switches a
DDPM-trained policy to DDIM sampling, as LeRobot users do for faster inference.

Needs LeRobot (``pip install 'getiaction-export[lerobot]'``; tested with lerobot 0.4.4).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from getiaction.errors import ConfigError
from getiaction_export.sources.lerobot_folder import Stats, load_folder, normalizer_step
from getiaction_export.sources.robot_names import RobotNamed, check_names, robot_names

SUPPORTED = ("act", "diffusion", "smolvla")
PI_TYPES = ("pi0", "pi05", "pi0_fast")
"""Physical Intelligence's VLAs: refused in one line that says why (see :func:`_policy_type`)."""
NOISE_SCHEDULERS = ("DDIM",)
"""Schedulers whose sampling is a function of the start noise alone (DDPM adds noise at every step)."""


def lerobot(path: str | None = None, noise_seed: int = 0, noise_scheduler: str | None = None, noise: str = "graph",
            vlm_path: str | None = None, names: str = "robot", cameras: Mapping[str, str] | None = None) -> nn.Module:
    """Load the LeRobot policy saved in ``path`` as a :class:`LeRobotExport` (see the module doc).

    ``noise`` and ``vlm_path`` are SmolVLA's (:mod:`getiaction_export.sources.smolvla`, which returns its own module).
    ``names``/``cameras``: the graph's input names (:mod:`getiaction_export.sources.robot_names`).
    """
    check_names(names)
    module = _lerobot(path, noise_seed, noise_scheduler, noise, vlm_path)
    if names == "lerobot":
        if cameras:
            raise ConfigError("policy.cameras: maps the robot loop's camera names; with policy.names=lerobot the "
                              "graph keeps LeRobot's names (drop policy.cameras or use policy.names=robot)")
        return module
    return RobotNamed(module, robot_names(list(getattr(module, "input_shapes", {})), cameras))


def _lerobot(path: str | None, noise_seed: int, noise_scheduler: str | None, noise: str,
             vlm_path: str | None) -> nn.Module:
    if not path:
        raise ConfigError("policy.path: required: the folder LeRobot's save_pretrained wrote (config.json, "
                          "model.safetensors, policy_preprocessor.json, ...)")
    folder = Path(path)
    kind = _policy_type(folder)
    if kind == "smolvla":
        from getiaction_export.sources.smolvla import smolvla

        return smolvla(folder, noise, vlm_path)
    if noise != "graph" or vlm_path:
        raise ConfigError(f"policy.{'noise' if noise != 'graph' else 'vlm_path'}: a SmolVLA option; this folder's "
                          f"policy is {kind}")
    policy, pre, post = _load(folder, noise_scheduler)
    draws = kind == "diffusion" and policy.config.noise_scheduler_type not in NOISE_SCHEDULERS  # DDPM, as trained
    normalizer = normalizer_step(pre, "policy_preprocessor")
    unnormalizer = normalizer_step(post, "policy_postprocessor")
    if kind == "act":
        rows = played_rows(policy.config)
        step: nn.Module = ACTStep(policy, rows)
        reference = LeRobotInference(pre, post, PlayedRows(policy, rows))
    else:  # LeRobot's predict_action_chunk stacks its history queues and calls generate_actions, as this does
        reference = LeRobotInference(pre, post, DiffusionStep(policy, noise_seed, draws))
        step = DiffusionStep(_traceable_copy(policy), noise_seed, draws, fresh_draws=True)  # afresh every call
        if draws:
            reference.conditioned_on = {STEP_NOISE: STEP_NOISE}
    module = LeRobotExport(policy, step, Stats(normalizer), Stats(unnormalizer), reference)
    coeff = getattr(policy.config, "temporal_ensemble_coeff", None)
    if kind == "act" and coeff is not None:
        module.play_warning = (
            f"ACT trained with temporal_ensemble_coeff={coeff}: LeRobot's select_action runs the model every tick "
            "and blends the overlapping chunks; physicalai plays each chunk from its queue, so the robot's actions "
            "differ from LeRobot's select_action (the chunk itself is verified)")
    return module


def played_rows(config: Any) -> int:
    """How many actions of a chunk LeRobot's ``select_action`` plays before it runs the model again.

    ``n_action_steps`` (the graph returns those, so physicalai's queue plays what LeRobot plays); with
    temporal ensembling LeRobot blends every tick's whole chunk, so the graph keeps it all.
    """
    if getattr(config, "temporal_ensemble_coeff", None) is not None:
        return int(config.chunk_size)
    return int(min(config.n_action_steps, config.chunk_size))


def _policy_type(folder: Path) -> str:
    config = folder / "config.json"
    if not folder.is_dir():
        raise ConfigError(f"policy.path: {folder} is not a folder (give a LeRobot save_pretrained folder)")
    if not config.is_file():
        raise ConfigError(f"policy.path: {folder} has no config.json; is it a LeRobot save_pretrained folder?")
    try:
        kind = str(json.loads(config.read_text())["type"])
    except (ValueError, KeyError) as error:
        raise ConfigError(f"policy.path: {config} is not a LeRobot policy config (no 'type')") from error
    if kind in PI_TYPES:
        raise ConfigError(f"policy.path: LeRobot's {kind} cannot be built here: LeRobot 0.4.4's PI models need a "
                          "patched transformers (an adaRMS-gated Gemma, transformers.models.siglip.check) that is not "
                          f"on the package registry, so their inference cannot be verified; supported: "
                          f"{', '.join(SUPPORTED)}")
    if kind not in SUPPORTED:
        raise ConfigError(f"policy.path: LeRobot policy type {kind!r} is not supported yet; supported: "
                          f"{', '.join(SUPPORTED)} (other types are not verified against their inference)")
    return kind


def _load(folder: Path, noise_scheduler: str | None) -> tuple[Any, Any, Any]:
    """LeRobot's own loaders: config, policy (eval, CPU) and its pre/post-processor pipelines."""

    def configure(config: Any) -> None:
        if noise_scheduler is not None:
            if noise_scheduler not in NOISE_SCHEDULERS or not hasattr(config, "noise_scheduler_type"):
                raise ConfigError(f"policy.noise_scheduler: {noise_scheduler!r} is not valid; use DDIM "
                                  "(diffusion policies only)")
            config.noise_scheduler_type = noise_scheduler

    return load_folder(folder, configure)


class ACTStep(nn.Module):
    """ACT's inference step on normalized inputs: the actions LeRobot plays of the chunk (its VAE latent is zero in
    eval): the first ``rows`` (``n_action_steps``) of ``predict_action_chunk``."""

    def __init__(self, policy: Any, rows: int) -> None:
        super().__init__()
        self.policy, self.rows = policy, rows
        self.cameras = list(policy.config.image_features)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.cameras:
            batch = {**batch, "observation.images": [batch[key] for key in self.cameras]}  # type: ignore[dict-item]
        return self.policy.model(batch)[0][:, : self.rows]


class PlayedRows(nn.Module):
    """LeRobot's own ``predict_action_chunk``, its first ``rows`` actions (what its ``select_action`` plays).

    A module holding the policy, not a closure: the float64 run that fits the fp32 bound casts what it holds.
    """

    def __init__(self, policy: Any, rows: int) -> None:
        super().__init__()
        self.policy, self.rows = policy, rows

    def forward(self, observation: dict[str, torch.Tensor]) -> torch.Tensor:
        chunk: torch.Tensor = self.policy.predict_action_chunk(observation)
        return chunk[:, : self.rows]


class DiffusionStep(nn.Module):
    """Diffusion's denoising loop on normalized inputs ``(B, n_obs_steps, ...)`` from a fixed start noise.

    A DDPM sampler adds fresh noise at every step but the last (diffusers' ``DDPMScheduler.step``):
    ``draws`` makes that noise a tensor :data:`STEP_NOISE` ``(B, steps, horizon, A)``, drawn in the
    graph (``torch.randn``) and returned beside the action, or given (``batch[STEP_NOISE]``, the
    reference conditioned on what the graph drew; without it a seeded draw, the same in float32 and
    float64). Each step takes its slice in order, through diffusers' own step code.

    ``fresh_draws``: ungiven step noise is a fresh ``torch.randn`` every call (the exported graph), not the seeded
    draw (the reference).
    """

    def __init__(self, policy: Any, noise_seed: int, draws: bool = False, *, fresh_draws: bool = False) -> None:
        super().__init__()
        self.policy = policy
        self.cameras = list(policy.config.image_features)
        config = policy.config
        generator = torch.Generator().manual_seed(noise_seed)
        self.register_buffer("noise", torch.randn((1, config.horizon, config.action_feature.shape[0]),
                                                  generator=generator))
        self.draws, self.fresh_draws = draws, fresh_draws
        self.step_shape = (noisy_steps(policy), int(config.horizon), int(config.action_feature.shape[0]))

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        batch = dict(batch)
        given = batch.pop(STEP_NOISE, None)
        if self.cameras:
            batch["observation.images"] = torch.stack([batch[key] for key in self.cameras], dim=-4)
        size = batch["observation.state"].shape[0]
        noise: torch.Tensor = self.noise  # type: ignore[assignment]
        if not self.draws:
            return self.policy.diffusion.generate_actions(batch, noise=noise.expand(size, -1, -1))
        if given is None:
            given = torch.randn(size, *self.step_shape) if self.fresh_draws else self._seeded(size)
        with step_noise_from(given):
            action = self.policy.diffusion.generate_actions(batch, noise=noise.expand(size, -1, -1))
        return {"action": action, STEP_NOISE: given}

    def _seeded(self, size: int) -> torch.Tensor:
        import numpy as np

        noise: torch.Tensor = self.noise  # type: ignore[assignment]
        # numpy's float32 draw: the float64 run (the fp32 bound's) runs with torch's float32 requests made float64
        draw = np.random.default_rng(REFERENCE_STEP_NOISE_SEED).standard_normal((size, *self.step_shape),
                                                                                dtype=np.float32)
        return torch.from_numpy(draw).to(noise.dtype)


STEP_NOISE = "step_noise"
"""DDPM's per-step noise: a graph output (what it drew) and the reference's input (what it is run on)."""
REFERENCE_STEP_NOISE_SEED = 0


def noisy_steps(policy: Any) -> int:
    """How many of the sampler's steps add noise (DDPM: every timestep but ``t = 0``; DDIM: none)."""
    diffusion = policy.diffusion
    scheduler = diffusion.noise_scheduler
    if type(scheduler).__name__ != "DDPMScheduler":
        return 0
    scheduler.set_timesteps(diffusion.num_inference_steps)
    return int(sum(int(t) > 0 for t in scheduler.timesteps))


@contextlib.contextmanager
def step_noise_from(noise: torch.Tensor) -> Any:
    """diffusers' DDPM step draws ``noise[:, k]`` at its k-th noisy step instead of a ``randn_tensor``."""
    from diffusers.schedulers import scheduling_ddpm

    original = scheduling_ddpm.randn_tensor
    calls = iter(range(noise.shape[1]))

    def take(shape: Any, **_: Any) -> torch.Tensor:
        index = next(calls)
        return noise[:, index].reshape(shape).to(_.get("dtype") or noise.dtype)

    scheduling_ddpm.randn_tensor = take
    try:
        yield
    finally:
        scheduling_ddpm.randn_tensor = original


class StaticCenterCrop(nn.Module):
    """torchvision's ``CenterCrop`` with its offsets computed once from the configured image size.

    torchvision computes them from the traced tensor's size (``round`` of a tensor), which the
    TorchScript exporter cannot trace; the numbers are the same (``int(round((H - h) / 2))``).
    """

    def __init__(self, size: tuple[int, int], image: tuple[int, int]) -> None:
        super().__init__()
        (self.height, self.width), (height, width) = size, image
        self.top, self.left = round((height - self.height) / 2.0), round((width - self.width) / 2.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images[..., self.top : self.top + self.height, self.left : self.left + self.width]


def _traceable_copy(policy: Any) -> Any:
    """A copy of the diffusion policy whose eval-time center crops the exporters can trace."""
    import copy

    config = policy.config
    shape = next(iter(config.image_features.values())).shape if config.image_features else None
    exported = copy.deepcopy(policy)
    for module in exported.modules():
        crop = getattr(module, "center_crop", None)
        if crop is not None and shape is not None and getattr(module, "do_crop", False):
            if getattr(module, "resize", None) is not None:
                raise ConfigError("policy.path: diffusion policies with resize_shape are not supported yet "
                                  "(torchvision's Resize does not trace); use crop_shape only")
            module.center_crop = StaticCenterCrop(tuple(config.crop_shape), (int(shape[-2]), int(shape[-1])))
    return exported


class LeRobotExport(nn.Module):
    """What is exported: normalize the raw observation, run the inference step, un-normalize the action."""

    play_warning: str | None = None
    """Where a robot playing the package's chunks differs from LeRobot's ``select_action`` (manifest, ``!`` line)."""

    def __init__(self, policy: Any, step: nn.Module, normalize: Stats, unnormalize: Stats,
                 reference: LeRobotInference) -> None:
        super().__init__()
        self.step, self.normalize, self.unnormalize = step, normalize, unnormalize
        self.config = None  # LeRobot's config is in the folder; the checkpoint format stores weights only
        self.input_shapes = {key: tuple(feature.shape) for key, feature in policy.config.input_features.items()}
        self.history = int(getattr(policy.config, "n_obs_steps", 1)) if isinstance(step, DiffusionStep) else 0
        self.visual = set(policy.config.image_features)
        # the gate compares the graph with LeRobot's own pipeline, not with this module (see module doc)
        object.__setattr__(self, "parity_reference", reference)

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        normalized = {key: self.normalize(key, value) for key, value in batch.items()}
        out = self.step(normalized)
        if isinstance(out, dict):  # DDPM: the action and the step noise the graph drew
            return {**out, "action": self.unnormalize("action", out["action"], inverse=True)}
        return self.unnormalize("action", out, inverse=True)

    @property
    def sample_input(self) -> dict[str, torch.Tensor]:
        """One raw observation (batch 1): state-like inputs around the stats, camera frames in [0, 1]."""
        generator = torch.Generator().manual_seed(0)
        history = (self.history,) if self.history else ()
        sample = {}
        for key, shape in self.input_shapes.items():
            full = (1, *history, *shape)
            tensor = torch.rand(full, generator=generator)
            sample[key] = tensor if key in self.visual else tensor * 4 - 2
        return sample


class LeRobotInference(nn.Module):
    """LeRobot's own inference on a raw observation batch: its pre-processor → ``infer`` → its post-processor."""

    conditioned_on: dict[str, str]
    """Graph output -> reference input (DDPM's step noise): :func:`getiaction_export.parity.runtimes.conditioned`."""

    def __init__(self, pre: Any, post: Any, infer: Any) -> None:
        super().__init__()
        self.pre, self.post = pre, post
        self.infer: Any = infer
        self.conditioned_on = {}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> Any:
        given = {name: batch[name] for name in self.conditioned_on.values() if name in batch}
        with torch.no_grad():
            processed = self.pre({k: v for k, v in batch.items() if k not in given})
            observation = {k: v for k, v in processed.items() if isinstance(v, torch.Tensor) and k != "action"}
            out = self.infer({**observation, **given})
            if isinstance(out, dict):
                return {**out, "action": self.post(out["action"])}
            return self.post(out)
