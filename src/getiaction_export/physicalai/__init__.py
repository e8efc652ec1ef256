"""Everything Intel's ``physicalai`` inference runtime dictates, in one place.

- :mod:`.manifest`: the ``manifest.json`` that makes an export folder a policy package;
- :mod:`.runtime_check`: the package loaded in ``InferenceModel`` and held to PyTorch;
- :mod:`.deploy_check`: the torch-free verdict on any package folder (``python -m
  getiaction_export.deploy_check DIR``).
"""
