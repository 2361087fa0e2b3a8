"""The training core every learning method shares: one optimizer loop, losses, batches.

:mod:`~earlyexp.agents.train.loop` holds :class:`Trainer` (AdamW, warmup + cosine schedule,
gradient clipping and accumulation, bf16 autocast on CUDA, atomic checkpoints and resume, a
NaN guard); it calls a plain ``loss_fn(model, batch) -> (loss, metrics)``.
:mod:`~earlyexp.agents.train.losses` holds those losses (masked NLL for IL/SFT, weighted NLL
for RAFT, the clipped policy gradient with KL for GRPO, HeRL's shaped off-policy weight) and
:mod:`~earlyexp.agents.train.batch` builds :class:`TrainBatch` from encoded examples or from
rollout trajectories. Importing these modules does not import torch.
"""
