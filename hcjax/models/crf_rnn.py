"""CRF-as-RNN (Zheng et al. ICCV 2015): an FCN-8s unary and mean-field dense-CRF iterations on top.

The CRF's weights are learned as in sadeepj/crfasrnn_pytorch: full [L, L] spatial and bilateral
kernel weights (initialised to w·I) and an [L, L] compatibility. Our compatibility penalises
(pydensecrf's sign: logits = -U - C·W·K̃Q) and starts at Potts, C = 1 - I; crfasrnn's C = I with
logits = U + C·W·K̃Q gives the same softmax for diagonal W, because the two differ by a per-pixel
constant. The kernel widths are fixed hyper-parameters; inference is `hcjax.ops.dense_crf`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hcjax.models.vgg import FCN8s
from hcjax.ops import dense_crf


class DenseCrf(nn.Module):
  """Mean-field CRF layer: [B, H, W, L] logits, [B, H, W, 3] RGB 0..255 -> [B, H, W, L] logits.

  Computes in float32 whatever the network's dtype; the image gets no gradient.
  """
  num_classes: int
  theta_alpha: float = 160.0
  theta_beta: float = 3.0
  theta_gamma: float = 3.0
  spatial_weight: float = 3.0
  bilateral_weight: float = 5.0
  method: str = "lattice"

  @nn.compact
  def __call__(self, logits: jax.Array, image: jax.Array, num_iterations: int) -> jax.Array:
    eye = jnp.eye(self.num_classes, dtype=jnp.float32)
    spatial = self.param("spatial_weights", lambda _: self.spatial_weight * eye)
    bilateral = self.param("bilateral_weights", lambda _: self.bilateral_weight * eye)
    compatibility = self.param("compatibility", lambda _: 1.0 - eye)
    return dense_crf.mean_field(
        -logits.astype(jnp.float32), image.astype(jnp.float32),
        gaussian_sxy=self.theta_gamma, gaussian_compat=compatibility @ spatial,
        bilateral_sxy=self.theta_alpha, bilateral_srgb=self.theta_beta,
        bilateral_compat=compatibility @ bilateral,
        num_iterations=num_iterations, normalization="after", method=self.method,
        return_logits=True)


class CrfRnn(nn.Module):
  """[B, H, W, 3] RGB 0..255 -> {"unary", "logits"}: [B, H, W, L] f32 logits before/after the CRF.

  The unary is the submodule "unary" (configs freeze it by "unary/.*"), the CRF "crf". The CRF runs
  `train_iterations` mean-field steps in training and `eval_iterations` otherwise (5 and 10 in the
  paper); with use_crf=False "logits" is the unary (FCN-8s pre-training).
  """
  num_classes: int
  width: int = 64
  fc_width: int = 4096
  use_crf: bool = True
  train_iterations: int = 5
  eval_iterations: int = 10
  theta_alpha: float = 160.0
  theta_beta: float = 3.0
  theta_gamma: float = 3.0
  spatial_weight: float = 3.0
  bilateral_weight: float = 5.0
  crf_method: str = "lattice"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array, train: bool) -> dict[str, jax.Array]:
    for name in ("train_iterations", "eval_iterations"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if self.crf_method not in dense_crf.METHODS:
      raise ValueError(f"crf_method must be one of {dense_crf.METHODS}, got {self.crf_method!r}")
    unary = FCN8s(self.num_classes, self.width, self.fc_width, self.dtype,
                  name="unary")(image, train)
    if not self.use_crf:
      return {"unary": unary, "logits": unary}
    crf = DenseCrf(self.num_classes, self.theta_alpha, self.theta_beta, self.theta_gamma,
                   self.spatial_weight, self.bilateral_weight, self.crf_method, name="crf")
    iterations = self.train_iterations if train else self.eval_iterations
    return {"unary": unary, "logits": crf(unary, image, iterations)}
