"""What runs. Packages by role, each allowed to import only what its line says
(``tests/code/test_structure.py`` enforces it; ``models`` is importable from all):

- ``io``, ``layout``, ``plots``: atomic writes, every artifact path, figures. Nothing else.
- ``config``: ``params.yaml`` as typed, validated sections. ``io``, the kinds and sampler
  tables of ``models``, ``evaluation.scorecard``.
- ``options``: what every ``latentops`` command shares: the protocol of a command module
  (``add_arguments``, ``main``), sections of ``params.yaml`` with ``--set`` overrides,
  ``apply-params``. ``io``, ``config``.
- ``serving``: the registered models' runtime (forecaster, normaliser, loaded autoencoder);
  shipped with every registered version. ``models`` only.
- ``data``: The Well format, validation, windows, latent caches. Base modules, ``serving``.
- ``evaluation``: metrics, scoring, bootstrap, scorecards, findings, report, evaluation key.
  Base modules, ``data``, ``serving``.
- ``recipes``: the training loop and pure construction of data, model and objective from
  configuration; no tracking. Base modules, ``data``, ``serving``, ``evaluation``.
- ``tracking``: MLflow runs, the Model Registry, evaluation results kept on versions.
  Base modules, ``serving``, ``evaluation.scorecard``.
- ``stages``: thin stages (read config, call recipes, record) and ``stages.runner``, the
  lifecycle the training stages share. Everything above; never another stage.
- ``cli``: the ``latentops`` command: global options and ``COMMANDS``, each command's module
  by name, imported on use. ``io``, ``config``, ``options``; never a stage.
"""
