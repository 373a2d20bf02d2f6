"""Deep Parsing Network (Liu et al. ICCV 2015): a dilated VGG16 unary and one MRF mean-field step.

The unary ("unary", `DilatedVGG`) gives per-class logits z at the input size and DPN's sigmoid
classifier p = sigmoid(z) (independent per class: p need not sum to one). On p, `hcjax.ops.mrf`
builds the pairwise penalty (b12 triple penalty, b13 label contexts, b14 block-min) and b15 returns
log q = log_softmax(ln p - penalty). Training is incremental, one stage at a time:
  "unary":   no pairwise term, log q = log_softmax(ln p); its argmax is the unary's argmax;
  "triple":  + b12 with a Potts context: penalty(u) = lambda · sum_{v != u} t(v), lambda learned;
  "context", "joint": + b13/b14 replacing the Potts context. The two build the same network; the
             configs differ in what they freeze ("unary/.*" and "triple/.*" in "context").
The subtrees "unary" and "triple" are the same in every stage, so each stage starts from the
last one's checkpoint; b13 starts as the Potts context of the "triple" stage (plus a little noise
that tells the K mixtures apart), so the added layers start near the previous stage's function.

Resolution: the paper upsamples the unary to the input (512x512) and runs b12-b14 there. With
pairwise_stride s > 1 they run on the input downsampled s times (p and the image resized
bilinearly, antialiased), and the penalty is resized back: `window` is always in pixels of the map
b12 runs on, so it covers window·s input pixels. b15 is always at the input size.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hcjax.models.vgg import DilatedVGG, resize_to
from hcjax.ops import mrf

STAGES = ("unary", "triple", "context", "joint")


class TriplePenalty(nn.Module):
  """b12 with learned w1, w2 (stored as logs, so > 0): [B, h, w, L], [B, h, w, 3] -> [B, h, w, L].

  They start as Gaussian widths: w1 = 1/(2·appearance_sigma²) in RGB 0..255 (pydensecrf's example
  bilateral srgb is 13) and w2 = 1/(2·position_sigma²) in pixels (default window/4, so the kernel
  covers the window).
  """
  window: int = 50
  appearance_sigma: float = 13.0
  position_sigma: float | None = None

  @nn.compact
  def __call__(self, probs: jax.Array, image: jax.Array) -> jax.Array:
    position_sigma = self.window / 4.0 if self.position_sigma is None else self.position_sigma
    for name, sigma in (("appearance_sigma", self.appearance_sigma),
                        ("position_sigma", position_sigma)):
      if not sigma > 0:
        raise ValueError(f"{name} must be > 0, got {sigma!r}")
    init = lambda sigma: lambda _: jnp.log(jnp.float32(0.5 / sigma ** 2))
    log_w1 = self.param("log_w_appearance", init(self.appearance_sigma))
    log_w2 = self.param("log_w_position", init(position_sigma))
    return mrf.triple_penalty(probs, image, jnp.exp(log_w1), jnp.exp(log_w2), window=self.window)


class LabelContexts(nn.Module):
  """b13 + b14: [B, h, w, L] -> [B, h, w, L] penalty, the min over K mixtures of a k x k context.

  b13's kernel [k, k, L, L·K] starts with every mixture Potts at the centre tap (the "triple"
  stage's penalty with lambda = 1) plus N(0, 1e-3) noise that tells the mixtures apart.
  """
  kernel_size: int = 9
  mixtures: int = 5

  @nn.compact
  def __call__(self, t: jax.Array) -> jax.Array:
    num_classes = t.shape[-1]

    def init(key, shape, dtype=jnp.float32):
      potts = jnp.repeat(1.0 - jnp.eye(num_classes, dtype=dtype), self.mixtures, axis=1)
      kernel = 1e-3 * jax.random.normal(key, shape, dtype)
      return kernel.at[shape[0] // 2, shape[1] // 2].add(potts)

    shape = (self.kernel_size, self.kernel_size, num_classes, num_classes * self.mixtures)
    kernel = self.param("kernel", init, shape)
    bias = self.param("bias", nn.initializers.zeros, shape[-1:])
    return mrf.block_min_pool(mrf.label_contexts(t, kernel, bias), self.mixtures)


class DPN(nn.Module):
  """[B, H, W, 3] RGB 0..255 -> {"unary": [B, H, W, L] logits z, "logits": [B, H, W, L] log q}.

  "logits" are float32 log-probabilities (b15 normalised): softmax("logits") is DPN's prediction in
  every stage. The pairwise layers compute in float32 whatever `dtype` the unary uses.
  """
  num_classes: int
  width: int = 64
  fc_width: int = 4096
  stage: str = "joint"
  window: int = 50
  context_kernel: int = 9
  mixtures: int = 5
  pairwise_stride: int = 1
  appearance_sigma: float = 13.0
  position_sigma: float | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array, train: bool) -> dict[str, jax.Array]:
    if self.stage not in STAGES:
      raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
    for name in ("window", "context_kernel", "mixtures", "pairwise_stride"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    unary = DilatedVGG(self.num_classes, self.width, self.fc_width, self.dtype,
                       name="unary")(image, train)
    log_p = jax.nn.log_sigmoid(unary)
    if self.stage == "unary":
      return {"unary": unary, "logits": mrf.dpn_mean_field_step(log_p, 0.0)}
    _, height, width, _ = image.shape
    probs, rgb = jnp.exp(log_p), image.astype(jnp.float32)
    if self.pairwise_stride > 1:
      small = (-(-height // self.pairwise_stride), -(-width // self.pairwise_stride))
      probs, rgb = resize_to(probs, *small), resize_to(rgb, *small)
    t = TriplePenalty(self.window, self.appearance_sigma, self.position_sigma,
                      name="triple")(probs, rgb)
    if self.stage == "triple":
      weight = self.param("triple_weight", nn.initializers.ones, ())
      penalty = weight * (jnp.sum(t, axis=-1, keepdims=True) - t)
    else:
      penalty = LabelContexts(self.context_kernel, self.mixtures, name="label_contexts")(t)
    if self.pairwise_stride > 1:
      penalty = resize_to(penalty, height, width)
    return {"unary": unary, "logits": mrf.dpn_mean_field_step(log_p, penalty)}
