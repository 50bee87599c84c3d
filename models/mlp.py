"""A plain multi-layer perceptron: the model of the CPU demo (Fashion-MNIST 784-512-512-10)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from matching.spec import PermutationSpec
from models.base import SpecBuilder, conv_linear_weights


class MLP(nn.Sequential):
    """Flatten → fc1 → relu1 → … → fc{n} → relu{n} → classifier, with ``hidden`` widths × ``width``."""

    # No residual stream (each group is one ReLU's output): both matching.stream choices give the same spec.
    matching_streams = ("pooled", "released")

    def __init__(
        self,
        num_classes: int = 10,
        in_features: int = 784,
        hidden: Sequence[int] = (512, 512),
        width: int = 1,
    ) -> None:
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}")
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive widths, got {list(hidden)}")
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        prev = in_features
        for k, h in enumerate(hidden, start=1):
            layers[f"fc{k}"] = nn.Linear(prev, h * width)
            layers[f"relu{k}"] = nn.ReLU()
            prev = h * width
        layers["classifier"] = nn.Linear(prev, num_classes)
        super().__init__(layers)
        self.num_hidden = len(hidden)

    def permutation_spec(self) -> PermutationSpec:
        """Groups ``hidden1`` … ``hidden{n}``: the units of each hidden layer, read after its ReLU."""
        b = SpecBuilder(self)
        prev = None
        for k in range(1, self.num_hidden + 1):
            group = f"hidden{k}"
            b.layer(f"fc{k}", group, prev)
            b.act(group, f"relu{k}")
            prev = group
        b.layer("classifier", None, prev)
        return b.build()

    def prunable_parameters(self) -> list[str]:
        """Every linear weight, the first layer and the classifier included."""
        return conv_linear_weights(self)
