"""attnlab.river: the Transformer as an integro-differential "river".

Tai, Liu, Li & Chan, *A Mathematical Explanation of Transformers*
(arXiv 2510.03989); spec ``specs/transformer_river.md``.

Conventions (used by every module of this package):

* A sequence state ``u`` has shape ``(N, d)``: **tokens are rows** (the
  paper's token coordinate x), features are columns (the paper's y).  This is
  the paper's U in R^{N_x x N_y}.  Internally the attention operator is the
  shared :func:`attnlab.core.attention.attend` (tokens are columns there), so
  :func:`attnlab.river.operators.attention` transposes at the boundary.
* Depth is time: a layer is one step of size ``h`` (the paper's Delta t = 1),
  ``T = L h``.
* Parameters are pytrees (``params.py``); static choices (activation, causal
  flag, LN mode) are non-pytree fields, so they never become tracers.

Modules: ``params`` (pytrees), ``operators`` (A, F, P_S1, Pi_T, P_S2),
``fields`` (R-post, R-pre, SA/USA), ``integrators`` (Euler/Heun/RK4,
projected variants, Lie/Strang/parallel splitting, ``paper_step``,
``preln_step``, ``integrate``), ``diffrax_backend``, ``loading`` (flax <->
river maps, ``to_paper_form``), ``metrics``; ``experiments/`` holds the
engine factories named by ``configs/river_*.py``.
"""
