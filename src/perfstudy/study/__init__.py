"""Studies: a study file (``spec``) expands into runs, each a config; ``plan`` registers them
in the results store (``store``) and picks those still to do; ``schedule`` groups them into
units (packs of runs that share a GPU); an executor (``executors``) runs each unit through
``execute``, which trains it and records its result in the store. ``flat`` turns stored runs
into one flat row each, for ``perfstudy runs`` and the report's CSV."""
