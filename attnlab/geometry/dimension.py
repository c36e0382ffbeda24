"""Neuromanifold dimension formulas with their domain of validity (spec §3.3-§3.4).

With ``ā_i = min(a_i, d_{i-1})``::

  dim M^light = sum_i [ā_i (2 d_{i-1} - ā_i) + d_i d_{i-1} - 1] - sum_{i<l} d_i^2
  dim M^soft  = dim M^light + l                        (the paper's Eq. 16)

For one layer these are Cor 3.3 (``a(2d-a) + dd' - 1``) and Thm 3.15
(``a(2d-a) + dd'``). [reconstructed, checked] The formulas hold inside

* (B1) non-increasing hidden widths ``d_0 >= d_1 >= ... >= d_{l-1}`` (``d_l`` free);
* (B2) ``t >= 2``;
* (B3) lightning only: no non-final layer with ``a_i = 1`` followed by a later
  layer with ``ā_j >= 2``.

Outside, they over-count (spec §4.4), so :func:`expected_dimension` returns
``value=None`` with the reason, unless ``gate=False`` (spec field
``formula_gate``) or, for (B1) only, ``effective_widths=True`` (spec field
``formula_effective_widths``: evaluate at ``e_i = min(d_0..d_i)`` for i < l).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence



@dataclasses.dataclass(frozen=True)
class Expected:
  """A formula value, or ``None`` with the reason it does not apply."""
  value: Optional[int]
  note: str

  @property
  def applicable(self) -> bool:
    return self.value is not None


def capped_attn_dims(widths: Sequence[int], attn_dims: Sequence[int]) -> tuple[int, ...]:
  """ā_i = min(a_i, d_{i-1})."""
  return tuple(min(a, d) for a, d in zip(attn_dims, widths[:-1]))


def formula(widths: Sequence[int], attn_dims: Sequence[int], kind: str) -> int:
  """The raw formula (no gate): lightning, or softmax = lightning + l."""
  if kind not in ("lightning", "softmax"):
    raise ValueError(f"kind must be 'lightning' or 'softmax', got {kind!r}")
  if len(widths) != len(attn_dims) + 1:
    raise ValueError(f"need len(widths) == len(attn_dims) + 1, got {widths}, {attn_dims}")
  abar = capped_attn_dims(widths, attn_dims)
  light = sum(a * (2 * d - a) + e * d - 1 for a, d, e in zip(abar, widths[:-1], widths[1:]))
  light -= sum(d * d for d in widths[1:-1])
  return light + (len(attn_dims) if kind == "softmax" else 0)


def single_layer_dimension(d: int, d_out: int, a: int, kind: str) -> int:
  """One layer: ``ā(2d - ā) + d d' - 1`` (lightning) or ``ā(2d - ā) + d d'`` (softmax)."""
  return formula((d, d_out), (a,), kind)


def violations(widths: Sequence[int], attn_dims: Sequence[int], kind: str, t: int) -> list[str]:
  """The (B1)-(B3) conditions that fail, each as a human-readable reason."""
  out = []
  hidden = list(widths[:-1])
  for i in range(1, len(hidden)):
    if hidden[i] > hidden[i - 1]:
      out.append(f"(B1) hidden widths must not increase, but d_{i} = {hidden[i]} > d_{i - 1} = {hidden[i - 1]}")
      break
  if t < 2:
    out.append(f"(B2) needs t >= 2, got t = {t} (t = 1 is degenerate, spec §4.5)")
  if kind == "lightning":
    abar = capped_attn_dims(widths, attn_dims)
    for i in range(len(attn_dims) - 1):
      later = [j for j in range(i + 1, len(attn_dims)) if abar[j] >= 2]
      if attn_dims[i] == 1 and later:
        out.append(f"(B3) lightning layer {i + 1} has a = 1 and a later layer {later[0] + 1} has ā >= 2")
        break
  return out


def effective_widths(widths: Sequence[int]) -> tuple[int, ...]:
  """``e_i = min(d_0, ..., d_i)`` for i < l; ``e_l = d_l``."""
  out, m = [], None
  for w in widths[:-1]:
    m = w if m is None else min(m, w)
    out.append(m)
  return tuple(out) + (widths[-1],)


def expected_dimension(widths: Sequence[int], attn_dims: Sequence[int], kind: str, t: int,
                       gate: bool = True, use_effective_widths: bool = False) -> Expected:
  """The formula's dimension, gated on (B1)-(B3).

  Args:
    widths: ``(d_0, ..., d_l)``. attn_dims: ``(a_1, ..., a_l)``.
    kind: ``"lightning"`` or ``"softmax"``. t: sequence length.
    gate: if False, always return the raw formula (the note lists violations).
    use_effective_widths: if a (B1) violation is the only problem, evaluate the
      formula at :func:`effective_widths` instead of refusing.
  """
  widths, attn_dims = tuple(widths), tuple(attn_dims)
  bad = violations(widths, attn_dims, kind, t)
  if not bad:
    return Expected(formula(widths, attn_dims, kind), "inside (B1)-(B3)")
  if not gate:
    return Expected(formula(widths, attn_dims, kind), "formula_gate off; outside the domain: " + "; ".join(bad))
  if use_effective_widths and all(b.startswith("(B1)") for b in bad):
    e = effective_widths(widths)
    if not violations(e, attn_dims, kind, t):
      return Expected(formula(e, attn_dims, kind), f"evaluated at effective widths {e} ({bad[0]})")
  return Expected(None, "formula not applicable: " + "; ".join(bad))


def symmetry_dimension(widths: Sequence[int], attn_dims: Sequence[int], kind: str) -> int:
  """Dimension of the generic orbit of the continuous symmetries (spec check 3).

  ``sum_i [2 a_i d_{i-1} - ā_i (2 d_{i-1} - ā_i)]`` (the fibre of (Q_i, K_i) -> K_i^T Q_i,
  which is ``a_i^2`` = dim GL_{a_i} when a_i <= d_{i-1}) ``+ sum_{i<l} d_i^2``
  (pass-through) ``+ l`` for lightning (per-layer scaling). Equals
  ``P - formula(...)``; the Jacobian nullity matches it inside (B1)-(B3).
  """
  abar = capped_attn_dims(widths, attn_dims)
  qk_fibre = sum(2 * a * d - b * (2 * d - b) for a, b, d in zip(attn_dims, abar, widths[:-1]))
  pass_through = sum(d * d for d in widths[1:-1])
  scalings = len(attn_dims) if kind == "lightning" else 0
  return qk_fibre + pass_through + scalings
