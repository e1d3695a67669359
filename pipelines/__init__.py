"""What runs. Packages by role, each allowed to import only what its line says
(``tests/code/test_structure.py`` enforces it; ``models`` is importable from all):

- ``io``, ``layout``, ``plots``: atomic writes, every artifact path, figures. Nothing else.
- ``settings``: ``params.yaml`` as typed, validated sections: the machinery (parsing,
  checks, the section names) in the package itself, which imports nothing of the project
  but ``io``; each concern's dataclasses in a module of their own (``settings.data``,
  ``settings.emulator``, ...), so that a stage depends on the settings it reads only;
  ``settings.sections``, every section's class (the whole-file check, ``apply-params``).
  ``io``, the kinds, sampler and filter of ``models``, ``evaluation.scorecard``.
- ``options``: what every ``latentops`` command shares: the protocol of a command module
  (``add_arguments``, ``main``), sections of ``params.yaml`` with ``--set`` overrides,
  option types. ``io``, the ``settings`` machinery.
- ``serving``: the registered models' runtime (the pyfunc forms, the assimilation methods);
  shipped with every registered version. ``models`` only.
- ``data``: The Well format, validation, windows, latent caches. Base modules, ``serving``.
- ``evaluation``: metrics, scoring, bootstrap, scorecards, findings, report, evaluation key.
  Base modules, ``data``, ``serving``.
- ``recipes``: the training loop, pure construction of data, model and objective from
  configuration, and the trained model's files (``recipes.artifact``); no tracking. Base
  modules, ``data``, ``serving``, ``evaluation``.
- ``tracking``: MLflow runs, the Model Registry, model cards, evaluation results kept on
  versions, the registered names. Base modules, ``serving``, ``evaluation.scorecard``.
- ``stages``: thin stages (read config, call recipes, record; each with its command-line
  options) and ``stages.runner``, the lifecycle the training stages share. Everything
  above; never another stage.
- ``cli``: the ``latentops`` command: global options and ``COMMANDS``, each command's module
  by name, imported on use. ``io``, the ``settings`` machinery, ``options``; never a stage.
- ``codedeps``: each DVC stage's code deps (the import closure of its command's module), the
  stale-lock check and the re-run table. ``cli``.

Training apart from packaging
-----------------------------
A training stage's output is the trained model (``data/models/<model>/``: safetensors
weights, constructor arguments, normalisation, digests, lineage; :mod:`pipelines.recipes.
artifact`), and the stages after it that train (latent caches, emulators, observation
encoders) read those files. One ``register`` stage turns every trained model into what a
team uses: its figures in its training run, a registered version with its model card (once
per training run, so re-running it registers nothing new), an export under
``data/registry/``; it also registers the assimilators. Evaluation, promotion and
assimilation read the registry. No training command imports ``serving``, the registry, the
model cards or the figures (a test says so), so editing them re-runs ``register`` and what
reads the registry, never training.

The trade-off, against registering at the end of each training stage: one more stage and
one more process (about 10 s a model on 2 cores), and a trained model is not in the registry
until ``register`` ran (``latentops register``, or ``dvc repro``). Against shipping the
runtime as a versioned package the models require: no release step, and a registered
version still carries exactly the code it was registered with. A serving-code change
reaches the registry only through new versions: ``register`` keeps the existing version of
a training run (delete it, or retrain, to publish the new code with the same weights).

Dependencies derived
--------------------
``dvc.yaml``'s code deps are generated (``python -m pipelines.codedeps --write``) from the
import closure of each stage's command module (plus the code ``register`` ships);
``tests/code/test_structure.py`` fails on a missing or superfluous entry and on a
``dvc.lock`` that records other code or params than the workspace's. ``python -m
pipelines.codedeps --table`` prints how many stage instances an edit of each module re-runs.

Adding a stage (checklist; 3 files, 6 with a section of its own in ``params.yaml``)
-----------------------------------------------------------------------------------
1. ``pipelines/stages/<stage>.py``: ``run(cfg, ...)`` (read config, call recipes and
   plumbing, write outputs atomically through ``pipelines.io``, track with
   ``pipelines.tracking.runs``), then ``add_arguments(parser)`` and ``main(args)``; artifact
   paths from ``pipelines.layout`` (add them there if new: a fourth file). A training stage
   hands :func:`pipelines.stages.runner.run_training` a ``TrainingJob`` and a ``finish``
   returning the trained model; ``register`` picks it up from ``data/models/``.
2. ``pipelines/cli.py``: one ``COMMANDS`` row.
3. ``dvc.yaml``: the stage (``cmd: latentops <command> --quiet``, data deps, params, outs),
   with one placeholder code dep; ``python -m pipelines.codedeps --write`` fills in the rest.
4. ``pipelines/settings/`` and ``params.yaml``: its section, if it has settings of its own:
   a dataclass in the settings module of its concern, its name in ``SECTIONS``
   (``settings/__init__.py``) and its class in ``CLASSES`` (``settings/sections.py``; a test
   checks that the two agree); ``params.yaml`` gives every value.

Files touched per change, before this layout and now
----------------------------------------------------
- A model kind: 3-4 before; 3-4 now (a row of ``models/kinds.py``, its class under
  ``models/``, its entry in ``models/networks.py``; its recipe if it trains differently).
- A metric: 7 places before; now its function (``evaluation/metrics.py``) and its class and
  suite line (``evaluation/scoring.py``), plus the name tables that read it (``HEADLINE`` in
  ``evaluation/scorecard.py`` if it is a headline, its words in ``tracking/cards.py``,
  ``CURVE_METRICS`` in ``stages/evaluate.py`` if it is plotted per lead); editing
  ``evaluation/metrics.py`` re-runs 10 trainings (the autoencoders' validation VRMSE, the
  emulators' rollout scores), not the observation encoders.
- An assimilation method: 8 files before; 1 now (its class and ``register`` call in the
  module of what it needs; :mod:`pipelines.serving.methods`), 2 with a new module.
- A stage: 8 before (12 for a training stage); 3-4 now (the checklist above).
"""
