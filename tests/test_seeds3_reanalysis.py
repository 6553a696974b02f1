"""The committed three-seed ablation (experiments/seeds3/ablation.csv) re-judged as a
replicated factorial with seeds as blocks: every pair of its seeds reaches the verdicts of all
three, and the three-seed "best" under the old per-effect rule is tied under Hsu's MCB. It
predates bits per byte and the tokenizer switch: char cells, judged on final_val_loss (nats
per character; on TinyShakespeare's ASCII, bpb is that over ln 2).

The expected sigma, df and margins were computed by hand (numpy, outside pipeline/): the
cell x seed residuals y - row mean - column mean + grand mean, MS_E = SS / df,
margin = t(0.975, df) x 2 sigma / sqrt(N)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nanomoe.switches import SWITCHES
from pipeline.report.analysis import analyse

SEEDS3 = Path(__file__).resolve().parents[1] / "experiments" / "seeds3" / "ablation.csv"
FULL_GRID = {s.name: list(s.levels) if s.model else [s.low] for s in SWITCHES}  # char only
METRIC = "final_val_loss"


def seeds3() -> pd.DataFrame:
    return pd.read_csv(SEEDS3).assign(tokenizer="char")


REAL = ["rope (main)", "moe (main)", "fgram (main)", "rope x fgram"]

# seeds -> (sigma, df, 95% margin of one effect), by hand
BY_HAND = {
    (1337, 1338): (0.0102, 7, 0.0120),
    (1337, 1339): (0.0080, 7, 0.0094),
    (1338, 1339): (0.0057, 7, 0.0067),
    (1337, 1338, 1339): (0.0082, 14, 0.0071),
}


@pytest.mark.parametrize("seeds", sorted(BY_HAND), ids=lambda s: "+".join(map(str, s)))
def test_every_pair_of_the_three_seeds_reaches_the_three_seed_verdicts(seeds):
    """Kills: the pooled df replaced by n - 1 (1 for a pair: t = 12.7 and sigma sqrt(7)
    larger, so moe, fgram and rope x fgram fall within noise), and the seed blocks left in
    the error (the seeds' shared shifts inflate sigma)."""
    df = seeds3()
    a = analyse(df[df.seed.isin(seeds)], FULL_GRID, METRIC)
    sigma, dof, margin = BY_HAND[seeds]
    assert a.kind == "replicated factorial" and a.n_seeds == len(seeds)
    assert (a.noise.sigma, a.noise.df, a.noise.me) == pytest.approx((sigma, dof, margin), abs=5e-5)
    judged = a.effects.set_index("effect").distinguishable
    assert judged[judged].index.to_list() == REAL


def test_the_three_seed_best_is_tied_under_hsus_mcb():
    """The old rule called rope+moe-fgram best, 0.0109 ahead of rope+moe+fgram on per-effect
    paired t-intervals. Judged with the pooled sigma, a per-comparison margin would be
    t(0.975, 14) x sigma sqrt(2/3) = 0.0143 and MCB's is d(7, 14) x sigma sqrt(2/3) = 0.0173:
    tied either way. Kills: a best called on the old rule's paired t-interval."""
    a = analyse(seeds3(), FULL_GRID, METRIC)
    gap, margin = a.ranking.gaps["rope+moe+fgram"]
    assert gap == pytest.approx(0.0109, abs=5e-5) and margin == pytest.approx(0.0173, abs=5e-5)
    assert a.ranking.best is None and a.ranking.tied == ["rope+moe-fgram", "rope+moe+fgram"]
