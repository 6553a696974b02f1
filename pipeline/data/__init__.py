"""The data stages: the corpus from ``data.url`` to each tokenizer's token files and F-grams.

- ``download.py``: stage ``download``, every shard of ``data.url`` into data/raw/, checked;
- ``tokenizer.py``: stage ``tokenizer``, one level of ``grid.tokenizer`` learned from the
  train split;
- ``prepare.py``: stage ``prepare``, the splits encoded with one tokenizer;
- ``mine_fgrams.py``: stage ``mine_fgrams``, the F-gram table of one tokenizer;
- their helpers: ``shards.py`` (reading each kind of shard), ``stream.py`` (documents one at a
  time), ``split.py`` (which document goes to which split), ``tokens.py`` (reading the token
  files back).

Run as ``python -m pipeline.<stage>`` (the entry modules at pipeline/'s top level). Outside
this folder, only ``tokens`` (the train cell and the tuner read the token files) and
``download`` (the corpus benchmark) are imported.
"""
