"""Segmentation metrics in mm, per class, and how a step curve becomes AUC and Final.

SPEC "Metrics": every metric is spacing-aware and per class; a case's value is the mean over its
classes. Arrays are (z, y, x) and ``spacing_mm`` is in the same order (2-D arrays: (y, x)).

- ``registry``: metric names (``dice``, ``nsd@2``, ``hd95``, ...), units, directions;
- ``binary``: the metrics of one binary mask pair, with the empty-mask policy;
- ``surface``: surfels and their areas (DeepMind's surface-distance method);
- ``surface_engine``: every surface distance (surfels, medpy boundary voxels), at a cost that
  follows the disagreeing surface, and the one-pass statistics of many classes;
- ``scoring``: a step's metrics over all classes of a label map;
- ``curves``: AUC and Final of a step curve;
- ``crops``: input checks and the boxes that crop work to where a class lives.
"""
