"""SMCAE: the stacked multichannel autoencoder (Zhang, Fu, Jiang, Sigal, Agam, "Learning from
synthetic data using a stacked multichannel autoencoder", ICMLA 2015, arXiv 1509.05463)."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from dtwin import AutoencoderModule


def kl_sparsity(hidden: Tensor, rho: float) -> Tensor:
    """sum_j KL(rho || mean activation of unit j over the batch), for sigmoid units."""
    rho_hat = hidden.mean(0).clamp(1e-6, 1 - 1e-6)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


class SMCAE(AutoencoderModule):
    """Stacked multichannel autoencoder: maps synthetic samples toward the real distribution.

    Each layer has one sigmoid encoder shared by two channels and two sigmoid decoders: the
    synthetic channel maps a synthetic input to a real target of the same class, the real
    channel maps a real input to itself. A channel's loss is the squared error (half the sum over
    features, averaged over samples) + ``beta`` x the KL sparsity of the hidden units (target
    ``sparsity``) + ``weight_penalty`` / 2 x the squared weights it uses; a layer's loss is
    ``L_syn + L_real + balance / 2 (L_syn - L_real)^2``.

    Training, as the authors: greedily layer by layer (``layer_epochs`` each; layer i reads the
    encodings of the layers below, and its decoders reconstruct the real sample's encoding at
    its input, the last layer the real sample itself: sizes d -> 1000 -> d, 1000 -> 500 -> 1000,
    500 -> 1000 -> d by default), then end to end through all encoders and the last layer's
    decoders for the remaining epochs. The phase follows the trainer's epoch, so a resumed run
    continues where it stopped; outside a Trainer, ``training_step`` trains end to end.

    Batch: ``x`` Tensor[B, d] synthetic samples in [0, 1], ``real`` Tensor[B, d] a real sample of
    the same class each (the synthetic channel's target and the real channel's input).
    ``forward(batch)`` = :meth:`transform` of ``x``, compared with ``real`` (metric ``mse``).

    Args:
        input_size: d.
        hidden: the encoders' sizes, bottom to top.
        sparsity: the target mean activation rho of the hidden units.
        beta: weight of the KL sparsity term (summed over the hidden units). 0 by default: with
            the UFLDL value 3 (or even 0.01) and Adam, the sparsity term drives the 1000-unit
            layers to constant activations and the transform to one output for every class
            (measured on digits_syn2real: a classifier trained on the transformed set scores
            chance on real digits).
        weight_penalty: the weight decay lambda of the loss (the optimiser's own weight decay is
            0 by default).
        balance: B of the balance term.
        layer_epochs: epochs of greedy training per layer (0: end to end from the start).
        finetune_sparsity: keep the KL sparsity term in the end-to-end phase. Off by default, as
            in the stacked autoencoders the authors build on (UFLDL), whose fine-tuning drops
            it: over all 2500 hidden units of the default stack it outweighs the reconstruction
            error and collapses the transform to one output for every class.
        **kwargs: optimizer settings of :class:`dtwin.AutoencoderModule`.
    """

    target_key = "real"

    def __init__(
        self,
        input_size: int = 64,
        hidden: list[int] | None = None,
        sparsity: float = 0.1,
        beta: float = 0.0,
        weight_penalty: float = 1e-4,
        balance: float = 1.0,
        layer_epochs: int = 30,
        finetune_sparsity: bool = False,
        weight_decay: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(weight_decay=weight_decay, **kwargs)
        hidden = [1000, 500, 1000] if hidden is None else list(hidden)
        if input_size < 1 or not hidden or min(hidden) < 1:
            raise ValueError(
                f"SMCAE: input_size and every hidden size must be >= 1, got {input_size}, {hidden}"
            )
        if not 0 < sparsity < 1:
            raise ValueError(f"SMCAE: sparsity must be in (0, 1), got {sparsity}")
        if min(beta, weight_penalty, balance) < 0 or layer_epochs < 0:
            raise ValueError("SMCAE: beta, weight_penalty, balance and layer_epochs must be >= 0")
        self.batch_spec = {"x": "[B, D]", "real": "[B, D]"}
        sizes = [input_size, *hidden]
        self.encoders = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        # decoders reconstruct each layer's input representation; the top one the sample itself
        outs = [*sizes[:-2], input_size]
        self.decoders_syn = nn.ModuleList(nn.Linear(h, o) for h, o in zip(hidden, outs, strict=True))
        self.decoders_real = nn.ModuleList(nn.Linear(h, o) for h, o in zip(hidden, outs, strict=True))

    def check_batch(self, batch: dict[str, Tensor]) -> None:
        super().check_batch(batch)
        d = self.hparams.input_size
        for key in ("x", "real"):
            if batch[key].shape[1] != d:
                raise ValueError(
                    f"SMCAE: batch[{key!r}] has {batch[key].shape[1]} features, expected input_size = {d} "
                    "(synthetic and real samples must have the same feature size)"
                )

    # ---- the maps -----------------------------------------------------------------------------

    def encodings(self, x: Tensor, upto: int | None = None) -> list[Tensor]:
        """Hidden representations of every encoder (the first ``upto``)."""
        out = []
        for encoder in self.encoders[: upto if upto is not None else len(self.encoders)]:
            x = torch.sigmoid(encoder(x))
            out.append(x)
        return out

    def encode(self, x: Tensor) -> Tensor:
        return self.encodings(x)[-1]

    def decode(self, z: Tensor) -> Tensor:
        """The real channel's decoder of the top layer."""
        return torch.sigmoid(self.decoders_real[-1](z))

    def transform(self, x_syn: Tensor) -> Tensor:
        """Synthetic samples [N, d] mapped toward the real distribution (the synthetic channel)."""
        if x_syn.ndim != 2 or x_syn.shape[1] != self.hparams.input_size:
            d = self.hparams.input_size
            raise ValueError(f"SMCAE.transform: x_syn must be Tensor[N, {d}], got {tuple(x_syn.shape)}")
        return torch.sigmoid(self.decoders_syn[-1](self.encode(x_syn)))

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        self.check_batch(batch)
        return self.transform(batch["x"])

    # ---- training -----------------------------------------------------------------------------

    def phase(self) -> int:
        """The layer trained greedily now (0, 1, ...), or -1 for end-to-end training."""
        if self._trainer is None:
            return -1
        layer = self.trainer.current_epoch // max(1, self.hparams.layer_epochs)
        return layer if self.hparams.layer_epochs and layer < len(self.encoders) else -1

    def _modules_of(self, phase: int) -> list[nn.Module]:
        if phase >= 0:
            return [self.encoders[phase], self.decoders_syn[phase], self.decoders_real[phase]]
        return [*self.encoders, self.decoders_syn[-1], self.decoders_real[-1]]

    def _set_trainable(self, phase: int) -> None:
        active = {id(p) for m in self._modules_of(phase) for p in m.parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in active)

    def _channel(
        self, hidden: list[Tensor], out: Tensor, target: Tensor, weights: list[Tensor], beta: float
    ) -> Tensor:
        hp = self.hparams
        error = 0.5 * (out - target).pow(2).sum(1).mean()
        penalty = 0.5 * hp.weight_penalty * sum(w.pow(2).sum() for w in weights)
        if not beta:
            return error + penalty
        return error + beta * sum(kl_sparsity(h, hp.sparsity) for h in hidden) + penalty

    def smcae_loss(self, batch: dict[str, Tensor], phase: int) -> Tensor:
        """The layer's (or, with phase -1, the stack's) two-channel loss with its balance term."""
        hp = self.hparams
        x_syn, x_real = batch["x"], batch["real"]
        if phase >= 0:
            with torch.no_grad():  # the layers below are fixed inputs
                syn_in = self.encodings(x_syn, phase)[-1] if phase else x_syn
                real_in = self.encodings(x_real, phase)[-1] if phase else x_real
            target = real_in if phase < len(self.encoders) - 1 else x_real
            encoders = [self.encoders[phase]]
            h_syn, h_real = [torch.sigmoid(encoders[0](syn_in))], [torch.sigmoid(encoders[0](real_in))]
        else:
            target, encoders = x_real, list(self.encoders)
            h_syn, h_real = self.encodings(x_syn), self.encodings(x_real)
        dec_syn, dec_real = self.decoders_syn[phase], self.decoders_real[phase]
        shared = [e.weight for e in encoders]
        beta = hp.beta if phase >= 0 or hp.finetune_sparsity else 0.0
        out_syn, out_real = torch.sigmoid(dec_syn(h_syn[-1])), torch.sigmoid(dec_real(h_real[-1]))
        loss_syn = self._channel(h_syn, out_syn, target, [*shared, dec_syn.weight], beta)
        loss_real = self._channel(h_real, out_real, target, [*shared, dec_real.weight], beta)
        return loss_syn + loss_real + 0.5 * hp.balance * (loss_syn - loss_real) ** 2

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.check_batch(batch)
        phase = self.phase()
        self._set_trainable(phase)
        loss = self.smcae_loss(batch, phase)
        n = batch["x"].shape[0]
        self.log_train_loss(loss, n)
        self.log("train/phase", float(phase), on_step=False, on_epoch=True, batch_size=n)
        return loss

    def on_train_end(self) -> None:
        for p in self.parameters():
            p.requires_grad_(True)

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(0)
        d = self.hparams.input_size
        return {"x": torch.rand(batch_size, d, generator=g), "real": torch.rand(batch_size, d, generator=g)}
