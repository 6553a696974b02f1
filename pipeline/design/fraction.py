"""Two-level fractional factorials: which cells a 2^(k-p) fraction trains, its defining
relation, its resolution, and the alias chain of every contrast it estimates.

- **Generators.** The k varying switches are lettered A, B, ... in the grid's order. A
  fraction 1/2^p is fixed by p generators such as ``D = ABC``: it trains the cells where D's
  code (-1 low, +1 high) is the product of A's, B's and C's (``D = -ABC``: minus it, the other
  half). Each generator gives a defining word, ABCD with its sign.
- **Defining relation and aliases.** The relation I = ABCD is every product of the p words
  (2^p - 1 of them; a product is the symmetric difference of the letters, as A x A = I). On
  the fraction, the contrast of a word w equals s times the contrast of w x W for each
  defining word W of sign s, so estimating w estimates its whole alias chain: with I = +ABCD,
  "B" is B + ACD. Montgomery, *Design and Analysis of Experiments*, 8th ed., ch. 8.
- **Resolution**: the length of the shortest defining word. III: main effects are clear of
  each other but aliased with two-factor interactions; IV: main effects clear of them, and
  two-factor interactions aliased with each other; V: both aliased with three-factor or
  higher interactions only.
- **Default generators**: the minimum-aberration designs of Montgomery's Table 8.14
  (8th ed.; the same designs as Box, Hunter and Hunter, *Statistics for Experimenters*, 2nd
  ed., Table 6.22), k <= 8; tests/test_fraction.py checks each is minimum aberration by
  enumerating every alternative.
- **Fold-over** (``foldover``): the half fraction, then its complement; the union is the
  full design and is analysed as one.

Pure Python: ``pipeline/params/`` reads ``grid.fraction`` with it, on every stage's path.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

FRACTIONS = {"1/2": 1, "1/4": 2}  # grid.fraction -> p, the number of generators
FOLDOVER = "foldover"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I (the identity) and no O
# Minimum-aberration generators by (k, p): Montgomery (8th ed.), Table 8.14.
GENERATORS = {
    (3, 1): ["C = AB"],
    (4, 1): ["D = ABC"],
    (5, 1): ["E = ABCD"],
    (5, 2): ["D = AB", "E = AC"],
    (6, 1): ["F = ABCDE"],
    (6, 2): ["E = ABC", "F = BCD"],
    (7, 1): ["G = ABCDEF"],
    (7, 2): ["F = ABCD", "G = ABDE"],
    (8, 1): ["H = ABCDEFG"],
    (8, 2): ["G = ABCD", "H = ABEF"],
}
ROMAN = {2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII"}

Word = tuple[int, frozenset[str]]  # (sign, factor names): a defining word, +ABCD
Contrast = tuple[str, ...]  # factor names in the grid's order: a main effect or interaction


class DesignError(ValueError):
    """A fraction or generator that makes no usable design: ``key: what; fix``."""


def contrast_names(factors: Sequence[str]) -> list[Contrast]:
    """Every contrast of a 2^k design: main effects, then two-way, ..., then k-way."""
    return [c for r in range(1, len(factors) + 1) for c in itertools.combinations(factors, r)]


def times(a: Word, b: Word) -> Word:
    """The product of two words: signs multiply, shared letters cancel (A x A = I)."""
    return a[0] * b[0], a[1] ^ b[1]


@dataclass(frozen=True)
class Design:
    """The cells a grid trains and the contrasts it estimates. No words: the full 2^k."""

    factors: tuple[str, ...]  # the varying switches, lettered A, B, ... in this order
    words: tuple[Word, ...] = ()  # the generators' defining words
    generators: tuple[str, ...] = ()  # as written (or the default's), "D = ABC"
    foldover: bool = False  # the half and its complement: analysed as the full design

    @property
    def fraction(self) -> str:
        if self.foldover:
            return FOLDOVER
        return next((f for f, p in FRACTIONS.items() if p == len(self.words)), "1")

    @property
    def fractional(self) -> bool:
        """Whether the grid is written cell by cell (a fraction, or a fold-over, whose first
        half keeps its stages when the second is added)."""
        return bool(self.words)

    @property
    def relation(self) -> list[Word]:
        """The defining relation of the analysed design, shortest words first (none for the
        full design and for a fold-over's union)."""
        if self.foldover:
            return []
        out = []
        for r in range(1, len(self.words) + 1):
            for combo in itertools.combinations(self.words, r):
                w = combo[0]
                for other in combo[1:]:
                    w = times(w, other)
                out.append(w)
        return sorted(out, key=lambda w: (len(w[1]), self.spell(w[1])))

    @property
    def resolution(self) -> int | None:
        """The length of the shortest defining word; None for a full design."""
        return min((len(w) for _, w in self.relation), default=None)

    def letter(self, factor: str) -> str:
        return LETTERS[self.factors.index(factor)]

    def spell(self, letters: Iterable[str]) -> str:
        """A word in letters, in the grid's order: ABCD."""
        return "".join(sorted((self.letter(f) for f in letters), key=LETTERS.index))

    def defining_relation(self) -> str:
        words = [("-" if s < 0 else "") + self.spell(w) for s, w in self.relation]
        return "I = " + " = ".join(words) if words else "none (the full design)"

    def keeps(self, coded: Mapping[str, int], *, first_half: bool = False) -> bool:
        """Whether the cell with these codes (each factor -1 or +1) is trained; a fold-over
        trains every cell (``first_half``: whether the half it started from has it)."""
        if self.foldover and not first_half:
            return True
        return all(math.prod(coded[f] for f in w) == s for s, w in self.words)

    def chain(self, contrast: Contrast) -> list[tuple[int, Contrast]]:
        """The contrast and its aliases, each with its sign (the contrast itself first, +);
        an alias of the identity (the grand mean) is left out."""
        out = [(1, contrast)]
        for s, w in self.relation:
            alias = w ^ frozenset(contrast)
            if alias:
                out.append((s, tuple(f for f in self.factors if f in alias)))
        return out

    def estimates(self) -> list[list[tuple[int, Contrast]]]:
        """One alias chain per estimable contrast, named by its shortest member (the first
        in ``contrast_names`` order): 2^(k-p) - 1 of them."""
        seen: set[Contrast] = set()
        out = []
        for contrast in contrast_names(self.factors):
            if contrast in seen:
                continue
            chain = self.chain(contrast)
            if any(frozenset(contrast) == w for _, w in self.relation):
                seen.add(contrast)  # aliased with the grand mean: not estimable
                continue
            seen.update(c for _, c in chain)
            out.append(chain)
        return out


GENERATOR = re.compile(r"^\s*([A-Z])\s*=\s*(-?)\s*([A-Z]+)\s*$")


def parse_generator(text: str, factors: Sequence[str]) -> Word:
    """``D = ABC`` (or ``D = -ABC``) as its defining word, over the lettered ``factors``."""
    lettered = ", ".join(f"{LETTERS[i]} {f}" for i, f in enumerate(factors))
    m = GENERATOR.match(text) if isinstance(text, str) else None
    if m is None:
        raise DesignError(
            f"grid.generators: {text!r} is not a generator; write it as 'D = ABC' or "
            f"'D = -ABC' over the grid's factors ({lettered})"
        )
    left, minus, right = m.groups()
    for letter in left + right:
        if letter not in LETTERS[: len(factors)]:
            raise DesignError(
                f"grid.generators: {text!r} names factor {letter}, which the grid does not "
                f"vary; its factors are {lettered}"
            )
    if len(set(right)) != len(right) or left in right:
        raise DesignError(f"grid.generators: {text!r} repeats a letter; each may appear once")
    names = frozenset(factors[LETTERS.index(c)] for c in left + right)
    return (-1 if minus else 1), names


def design(
    factors: Sequence[str], fraction: str | None, generators: Sequence[str] | None
) -> Design:
    """The design of a grid with these varying ``factors``, checked: ``fraction`` null,
    1/2, 1/4 or foldover; ``generators`` null (the default for k and p) or p of them."""
    factors = tuple(factors)
    if fraction is None:
        if generators is not None:
            raise DesignError(
                "grid.generators: set without grid.fraction; add grid.fraction: 1/2 (one "
                "generator) or 1/4 (two), or remove grid.generators"
            )
        return Design(factors)
    if fraction != FOLDOVER and fraction not in FRACTIONS:
        raise DesignError(
            f"grid.fraction: {fraction!r} is not a design; use 1/2, 1/4 (5 or more varying "
            "switches), foldover (a half, then its complement) or null (the full grid)"
        )
    k, p = len(factors), FRACTIONS.get(fraction, 1)
    if 2 ** (k - p) - 1 < k:
        need = "5 or more varying switches" if p == 2 else "3 or more varying switches"
        raise DesignError(
            f"grid.fraction: {fraction} of a 2^{k} grid leaves {2 ** (k - p)} cells, too few "
            f"to keep its {k} main effects apart (nothing to alias them with but each "
            f"other); a {fraction} fraction needs {need}, or set grid.fraction: null"
        )
    if generators is None:
        if (k, p) not in GENERATORS:
            raise DesignError(
                f"grid.generators: no default for a {fraction} fraction of {k} switches; "
                f"write {p} generator(s), e.g. ['{LETTERS[k - 1]} = {LETTERS[: k - 1]}']"
            )
        generators = GENERATORS[(k, p)]
    if not isinstance(generators, list) or len(generators) != p:
        raise DesignError(
            f"grid.generators: {fraction} needs a list of {p} generator(s), one per halving; "
            f"got {generators!r}"
        )
    words = tuple(parse_generator(g, factors) for g in generators)
    made = Design(factors, words, tuple(generators), fraction == FOLDOVER)
    check_words(Design(factors, words, tuple(generators)), fraction)
    return made


def check_words(d: Design, fraction: str) -> None:
    """The generators make 2^p - 1 distinct words, none shorter than three letters."""
    relation = d.relation
    if len({w for _, w in relation}) < len(relation) or not all(w for _, w in relation):
        raise DesignError(
            f"grid.generators: {list(d.generators)} are not independent (one is a product "
            f"of the others), so they do not make a {fraction} fraction; choose others"
        )
    short = relation[0]
    if len(short[1]) < 3:
        a, b = sorted(short[1], key=d.factors.index)
        raise DesignError(
            f"grid.generators: {list(d.generators)} alias the main effects of {a} and {b} "
            f"(I = {d.spell(short[1])}, resolution II); use generators whose defining words "
            "all have 3 or more letters"
        )
