"""``a2d``: Align-to-Distill (Jin et al., LREC-COLING 2024), the closest published competitor to AMAD.

A learned pointwise convolution maps the student's heads onto the teacher's (per layer pair), and
each teacher map is matched to its aligned map by KL over the whole map (:mod:`amad.losses.a2d`).
Where AMAD's mixture weights come from map similarity, A2D's are learned; both keep every teacher head.
The reference also decays its attention weight by 0.9 per epoch; amad keeps ``distill.weights`` constant
for every method, so comparisons differ only in the term.
"""

from __future__ import annotations

from amad.contracts.method import METHODS, Method, Needs


@METHODS.register("a2d")
class AlignToDistill(Method):
    needs = Needs(maps=True)
    term = "amad.methods.terms.a2d:AlignerTerm"
