"""Weight matching's answers on the demo and paper models, pinned before the descent was changed.

The digests were recorded with the previous code, whose only start was the identity. That descent
is still run (``init_perms`` = identity reproduces it alone) and must give exactly the pinned
permutations. ``match_weights`` now also runs a second descent from a data-flow first pass and keeps
it only where its objective is strictly higher: so it either returns the pinned permutations or
something that scores strictly more. (On these random-init pairs the second start wins, by 1-7%.)
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from matching import identity_permutations
from matching.weight_matching import match_weights
from models import create

# name -> (model, architecture kwargs); A and B are initialised from seeds 0 and 1
PINNED = {
    "MLP-demo": ("MLP", {"in_channels": 1, "image_size": 28, "mlp_hidden": [512, 512]}),
    "ResNet20x1": ("ResNet", {"in_channels": 3, "width": 1}),
    "ResNet20x4": ("ResNet", {"in_channels": 3, "width": 4}),
}
# name -> sha256 of the permutations (groups in sorted order, int64 bytes)
DIGESTS = {
    "MLP-demo": "1be70525b8f0cda9bd3946f51f6558ca8279fcad4c07970096120435a7fc8f32",  # objective 37.6817, 13 sweeps
    "ResNet20x1": "d3584d7a36d88141973817d52bd70f0ff67ddf43d0bf7ad35ad7c7930fcf6150",  # objective 1693.17, 4 sweeps
    "ResNet20x4": "d35149a19b800fbef863beb36ce349ea132e9d5f8fa609949d552e7a59f46204",  # objective 6596.43, 4 sweeps
}


def digest(perms: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for g in sorted(perms):
        h.update(g.encode())
        h.update(perms[g].to(torch.int64).numpy().tobytes())
    return h.hexdigest()


def pair(model_type: str, kwargs: dict) -> tuple:
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(create(model_type, num_classes=10, **kwargs))
    return models[0].permutation_spec(), models[0].state_dict(), models[1].state_dict()


@pytest.mark.parametrize("name", sorted(PINNED))
def test_weight_matching_gives_the_pinned_permutations_on_the_demo_and_paper_models(name):
    spec, sd_a, sd_b = pair(*PINNED[name])
    before = match_weights(spec, sd_a, sd_b, seed=0, init_perms=identity_permutations(spec, sd_a))
    assert before.converged
    assert digest(before.perms) == DIGESTS[name]
    after = match_weights(spec, sd_a, sd_b, seed=0)
    assert after.converged
    if digest(after.perms) != DIGESTS[name]:
        assert after.objective > before.objective * (1 + 1e-9)
    else:
        assert after.objective == before.objective
