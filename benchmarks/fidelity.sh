#!/usr/bin/env bash
# Accuracy effects of two settings, over three seeds each (issue 10; results in benchmarks/RESULTS.md):
#   precision: fp32 vs bf16 autocast, on the demo (MLP, Fashion-MNIST, 97 %);
#   matching.augment: un-augmented in-order batches vs augmented shuffled ones, on the demo and on a
#   ResNet20x1 trained briefly on Fashion-MNIST. Variants share every artifact they can (only matching and
#   what follows it is redone for matching.augment). Usage: benchmarks/fidelity.sh OUT_DIR  (about 40 min on 2 cores)
set -euo pipefail
out=${1:?usage: benchmarks/fidelity.sh OUT_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$repo/.venv/bin/python"
mkdir -p "$out"
cat > "$out/resnet20_fmnist.yaml" <<YAML
model_type: ResNet
dataset: fashion-mnist
dataset_root: datasets
train_subset: 10000
test_subset: 2000
epochs: 4
sparse_epochs: 4
batch_size: 128
device: cpu
rewind_points: [1]
optimizer: {lr: 0.05, sparse_lr: 0.05}
pruning: {sparsity: 0.75, prune_perc: 0.5, train_epochs_per_prune: 1, prune_lr: 0.02, tolerance: 0.005}
matching: {method: activation, num_batches: 20, interpolation_batches: 10}
YAML
cd "$out"
for seed in 0 1 2; do
  for variant in "precision=fp32" "precision=bf16" "matching.augment=true"; do
    /usr/bin/time -f "demo seed $seed $variant: %e s" "$py" "$repo/experiment.py" -seed "$seed" \
      -save_path demo --no-progress --set "$variant" > "demo-$seed-${variant//[.=]/_}.log" 2>> times.txt
  done
  for augment in false true; do
    /usr/bin/time -f "resnet20 seed $seed augment=$augment: %e s" "$py" "$repo/experiment.py" \
      -config resnet20_fmnist.yaml -seed "$seed" -save_path resnet --no-progress \
      --set "matching.augment=$augment" > "resnet-$seed-$augment.log" 2>> times.txt
  done
done
"$py" -m analysis.table demo
"$py" -m analysis.table resnet
cat times.txt
