"""segloop: the evaluation harness for interactive medical image segmentation challenges.

One import package, built from the repository's folders (docs/architecture.md):

- ``segloop.core`` (``evaluator/core/``): the ground layer, records, image I/O, metrics, the
  result store, the model contract and the interfaces; it imports no other part of segloop;
- ``segloop.protocols``, ``segloop.containers``, ``segloop.baselines``: robot users, model
  back-ends, reference models (each on the ground layer only);
- ``segloop.loop`` and ``segloop.runs``: the interaction loop and runs of a dataset;
- ``segloop.leaderboard``: tables, rankings, HTML, platform scorers;
- ``segloop.app`` (demo, bench, phantoms) and ``segloop.cli`` (the ``segloop`` command).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("segloop")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
