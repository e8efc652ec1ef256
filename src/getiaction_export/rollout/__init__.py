"""Closed-loop rollouts: the task adapters (:mod:`.adapter`, :mod:`.pusht`), the drivers that pick actions
(:mod:`.drivers`) and the episodes compared step by step (:mod:`.episodes`). The stage is
:mod:`getiaction_export.stages.rollout`."""
