"""getiaction_export: the Hydra application that exports, checks and verifies policies.

``python -m getiaction_export format=onnx policy=dummy`` composes ``conf/``, runs
:class:`getiaction_export.pipeline.ExportPipeline` and writes ``result.json``.
"""
