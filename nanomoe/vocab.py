"""The vocabulary's fixed points, shared by both tokenizers and by the params that size them:
the end-of-document token's text and the bounds of a BPE's vocabulary. No imports, so that
the params reader (every stage's) and the tokenizers depend on it alone."""

EOD_TEXT = "<|endoftext|>"  # how decode shows the end-of-document token
MIN_VOCAB = 256 + 1  # a BPE's least: every byte, and the end-of-document token (no merges)
MAX_VOCAB = 2**16  # a BPE's most: ids that fit its uint16 token files
