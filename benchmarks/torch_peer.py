"""The PyTorch peer of `vae_mnist_500_500_100`, for the training throughput benchmark.

Same architecture, objective and optimizer as the zoo preset, written the way a
PyTorch user would: an eager `nn.Module`, Adam, data as one in-memory tensor with a
fresh permutation per epoch (no DataLoader workers: on 2 cores they only compete with
the training threads).

    784 -> [Dense 500, BN, ReLU] -> [Dense 500, BN, ReLU] -> mean 100, log-variance 100
    100 -> [Dense 500, BN, ReLU] -> [Dense 500, BN, ReLU] -> 784 Bernoulli logits
"""

import time

import numpy as np
import torch
from torch import nn

NUM_PARAMETERS = 1_440_984


def _stack(sizes, batch_norm=True):
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.BatchNorm1d(fan_out) if batch_norm else nn.Identity(), nn.ReLU()]
    return nn.Sequential(*layers)


class TorchVAE(nn.Module):
    def __init__(self, input_dim=784, hidden_units=(500, 500), latent_dim=100, batch_norm=True):
        super().__init__()
        self.encoder = _stack((input_dim, *hidden_units), batch_norm)
        self.mean = nn.Linear(hidden_units[-1], latent_dim)
        self.log_variance = nn.Linear(hidden_units[-1], latent_dim)
        self.decoder = nn.Sequential(
            _stack((latent_dim, *reversed(hidden_units)), batch_norm),
            nn.Linear(hidden_units[0], input_dim),
        )

    def forward(self, x):
        """Returns the negative ELBO per example (one reparameterised sample)."""
        h = self.encoder(x)
        mean, log_variance = self.mean(h), self.log_variance(h)
        z = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
        logits = self.decoder(z)
        log_px_z = -nn.functional.binary_cross_entropy_with_logits(
            logits, x, reduction="none"
        ).sum(-1)
        kl = 0.5 * (log_variance.exp() + mean.square() - 1.0 - log_variance).sum(-1)
        return kl - log_px_z


def train_throughput(images, batch_size=100, num_steps=500, warmup_steps=50,
                     learning_rate=1e-3, seed=0, num_threads=None):
    """Examples per second of Adam steps on `images` ([N, 784] float32 in {0, 1}).

    `num_threads`: PyTorch intra-op threads (None: its default, one per core). On a
    machine shared with other jobs, OpenMP's spinning barriers can make the default far
    slower than one thread, so the benchmark measures both.
    """
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    model = TorchVAE()
    assert sum(p.numel() for p in model.parameters()) == NUM_PARAMETERS
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    data = torch.from_numpy(np.asarray(images, np.float32).reshape(len(images), -1))
    batches_per_epoch = len(data) // batch_size

    def batches():
        while True:
            order = torch.randperm(len(data))
            for i in range(batches_per_epoch):
                yield data[order[i * batch_size:(i + 1) * batch_size]]

    model.train()
    stream = batches()
    start = None
    for step in range(warmup_steps + num_steps):
        if step == warmup_steps:
            start = time.perf_counter()
        loss = model(next(stream)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    if not np.isfinite(loss.item()):
        raise RuntimeError(f"PyTorch peer diverged: loss {loss.item()}")
    return num_steps * batch_size / seconds


@torch.no_grad()
def log_likelihood(model, x, num_samples=5000, chunk=500):
    """Importance-sampled log p(x) `[B]` with `num_samples` posterior samples in chunks, as `zoo` computes it.

    log p(x) ~= logsumexp_s [log p(x|z_s) + log p(z_s) - log q(z_s|x)] - log S, z_s ~ q(z|x);
    the encoder runs once, the decoder once per chunk of `chunk` samples x B rows.
    """
    model.eval()
    h = model.encoder(x)
    mean, log_variance = model.mean(h), model.log_variance(h)
    std = torch.exp(0.5 * log_variance)
    log_2pi = float(np.log(2 * np.pi))
    totals = []
    for start in range(0, num_samples, chunk):
        size = min(chunk, num_samples - start)
        eps = torch.randn(size, *mean.shape)
        z = mean + std * eps  # [S, B, latent]
        logits = model.decoder(z.reshape(-1, z.shape[-1])).reshape(size, x.shape[0], -1)
        log_px_z = -nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand(size, -1, -1), reduction="none").sum(-1)
        log_pz = -0.5 * (z.square() + log_2pi).sum(-1)
        log_qz = -0.5 * (eps.square() + log_2pi + log_variance).sum(-1)
        totals.append(torch.logsumexp(log_px_z + log_pz - log_qz, dim=0))
    return torch.logsumexp(torch.stack(totals), dim=0) - float(np.log(num_samples))


def log_likelihood_throughput(images, num_samples=5000, num_threads=None, seed=0):
    """Examples per second of `log_likelihood` on `images` ([B, 784]), after one warm-up batch."""
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    model = TorchVAE()
    x = torch.from_numpy(np.asarray(images, np.float32).reshape(len(images), -1))
    log_likelihood(model, x, num_samples=500)  # warm-up
    start = time.perf_counter()
    result = log_likelihood(model, x, num_samples=num_samples)
    seconds = time.perf_counter() - start
    if not torch.isfinite(result).all():
        raise RuntimeError("PyTorch evaluator gave a non-finite log-likelihood")
    return len(x) / seconds
