"""Where a policy comes from: each module returns a :class:`~getiaction_export.state.BuiltPolicy`.

- :mod:`.config`: a ``_target_`` (our policies, any factory) built fresh with seeded weights;
- :mod:`.checkpoint`: a ``to_torch`` checkpoint, its class checked against an allow-list.

A new source (e.g. a LeRobot folder) is one module here and one branch in
:func:`getiaction_export.stages.build.build`.
"""
