"""SRC in your own training loop: plain PyTorch, class-incremental split MNIST, a sleep after each task.

    python docs/own_loop.py                # the whole run, seed 0 (about a minute on 2 cores)
    python docs/own_loop.py --no-sleep     # the same loop without the sleeps (sequential training)
    python docs/own_loop.py --limit 3000   # a slice of the data (what the test runs)

The network is yours (any nn.Sequential of Linear, ReLU and Dropout layers); src.sleep_model sleeps it with
a preset's constants, reading only the current task's training images, and returns a slept copy.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the project's root
import config  # noqa: E402  (the project's modules pin the CPU code paths before torch loads)
import data  # noqa: E402
import src  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--limit", type=int, default=0, help="use only the first N training and test images (0: all)")
p.add_argument("--no-sleep", action="store_true", help="train without the sleeps")
args = p.parse_args()

torch.manual_seed(0)
train_x, train_y, test_x, test_y = data.load("mnist")
if args.limit:
    train_x, train_y, test_x, test_y = train_x[:args.limit], train_y[:args.limit], test_x[:args.limit], test_y[:args.limit]
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1200, bias=False), torch.nn.ReLU(),
                            torch.nn.Linear(1200, 1200, bias=False), torch.nn.ReLU(), torch.nn.Linear(1200, 10, bias=False))
optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
constants = config.preset_sleep("beyond-weights-only")   # the preset's MNIST constants, a src.Sleep

for k, task in enumerate([(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)], start=1):
    mine = torch.isin(train_y, torch.tensor(task))
    model.train()
    for epoch in range(2):
        for x, y in DataLoader(TensorDataset(train_x[mine], train_y[mine]), batch_size=100, shuffle=True):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimiser.step()
    model.eval()
    if not args.no_sleep:   # the sleep reads task k's training images only; the optimiser keeps its momentum
        slept, info = src.sleep_model(model, train_x[mine], constants, task=k, seed=k)
        model.load_state_dict(slept.state_dict())
    with torch.no_grad():
        correct = model(test_x).argmax(1) == test_y
    per_task = [100 * correct[torch.isin(test_y, torch.tensor(t))].float().mean().item() for t in [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)][:k]]
    print(f"after task {k}: all classes {100 * correct.float().mean().item():.1f} %, tasks so far "
          + " ".join(f"{a:.1f}" for a in per_task))
