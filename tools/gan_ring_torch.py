#!/usr/bin/env python3
"""PyTorch baseline for examples/gan_ring.lam (issue 16): the same networks, losses and schedule.

Generator 8 -> 64 -> 64 -> 2 and critic 2 -> 64 -> 64 -> 1 (ReLU between, Glorot-uniform weights and
zero biases as Lamina's dense), the non-saturating GAN losses with softplus, Adam(lr 1e-3, betas
(0.5, 0.999), eps 1e-8) for each player, 40 epochs of batches of 128 shuffled rows: per batch one
critic step on the batch (fresh noise for its fakes, the generator held fixed), then one generator
step on fresh noise of 128 rows. Then 1,000 samples are measured as tools/gan_ring_eval.py does.

    python3 tools/gan_ring_torch.py --data examples/data/ring/real.npy --seeds 1 2 3 4 5 [--plot DIR]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gan_ring_eval  # noqa: E402


def mlp(sizes):
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        linear = nn.Linear(fan_in, fan_out)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def train(data, seed, epochs=40, batch=128, noise=8):
    torch.manual_seed(seed)
    generator = mlp([noise, 64, 64, 2])
    critic = mlp([2, 64, 64, 1])
    adam = dict(lr=1e-3, betas=(0.5, 0.999), eps=1e-8)
    critic_optimizer = torch.optim.Adam(critic.parameters(), **adam)
    generator_optimizer = torch.optim.Adam(generator.parameters(), **adam)
    softplus = nn.functional.softplus
    real_all = torch.from_numpy(data)
    order_generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(real_all), generator=order_generator)
        for start in range(0, len(real_all), batch):
            real = real_all[order[start:start + batch]]
            fake = generator(torch.randn(len(real), noise)).detach()
            d_loss = softplus(-critic(real)).mean() + softplus(critic(fake)).mean()
            critic_optimizer.zero_grad()
            d_loss.backward()
            critic_optimizer.step()
            g_loss = softplus(-critic(generator(torch.randn(batch, noise)))).mean()
            generator_optimizer.zero_grad()
            g_loss.backward()
            generator_optimizer.step()
    with torch.no_grad():
        return generator(torch.randn(1000, noise)).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="examples/data/ring/real.npy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--plot", help="directory for one PNG per seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = np.load(args.data).astype(np.float32)
    results = []
    for seed in args.seeds:
        start = time.perf_counter()
        samples = train(data, seed, epochs=args.epochs)
        seconds = time.perf_counter() - start
        result = gan_ring_eval.measure(samples)
        result.update(seed=seed, seconds=round(seconds, 2))
        results.append(result)
        print(f"seed {seed}: {result['modes_covered']}/8 modes, "
              f"{100 * result['fraction_near']:.1f}% near a centre, "
              f"{'passes' if result['passes'] else 'fails'} ({seconds:.1f} s)")
        if args.plot:
            os.makedirs(args.plot, exist_ok=True)
            gan_ring_eval.draw(samples, data, os.path.join(args.plot, f"torch_seed{seed}.png"),
                               f"PyTorch seed {seed}: {result['modes_covered']}/8 modes")
    passed = sum(r["passes"] for r in results)
    print(f"{passed} of {len(results)} seeds pass (7+ modes, 60%+ near)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
