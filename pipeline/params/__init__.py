"""params.yaml, read and validated once, into the typed config dataclasses.

- ``reader.py``: the file to a mapping, and its error rules (not found, not UTF-8, bad YAML,
  a key written twice), each one line naming the file and the line;
- ``sections.py``: the sections' schemas: which key fills which field of which dataclass
  (``KEYS``), and the rules that turn a dataclass's ValueError into a line naming the key;
- ``grid.py``: ``grid:`` (each switch's levels) and ``seeds``;
- ``load.py``: ``load_params`` and ``Params``, every section checked, which build each
  cell's configs.

Every command opens the project through ``pipeline.project.Project.load()``, which calls
``load_params``; the tuner reads its own ``tune:`` section with ``sections.read_section``.
"""

from pipeline.params.load import Params, load_params

__all__ = ["Params", "load_params"]
