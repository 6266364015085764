"""The transformer family's policies: our Llama (TransformerPolicy) for modarith, any HF causal LM
(HFPolicy, sampled at ``policy.temperature``) for a file task. Chosen by the task that was loaded.

    policy = LMPolicy.load(ref_dir, task, device="cpu", temperature=cfg.policy.temperature)
"""

from __future__ import annotations

from pathlib import Path


class LMPolicy:
    """Not a policy: the loader the registry names for the transformer family."""

    @classmethod
    def load(cls, directory: str | Path, task, device: str = "auto", temperature: float = 1.0):
        from grpo_amp.tasks.file_task import FileTask

        if isinstance(task, FileTask):
            from grpo_amp.devices import resolve_device
            from grpo_amp.policies.hf import HFPolicy

            return HFPolicy.load(directory, task, device=resolve_device(device), temperature=temperature)
        from grpo_amp.policies.transformer import TransformerPolicy

        return TransformerPolicy.load(directory, task, device=device)  # samples at temperature 1 (its own pi)
