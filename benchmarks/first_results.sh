#!/usr/bin/env bash
# The README's 'first results' on a GPU machine: one ResNet-18 run of 10 epochs per dataset,
# one SVM RBF C=10 on the full split, and the quick study end to end. Writes JSON and logs
# under ${OUT:-out/first-results}.
#   PERFSTUDY_DATA_DIR=... PYTHONPATH=src bash benchmarks/first_results.sh
set -uo pipefail
out="${OUT:-out/first-results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
python -c "import torch, torchvision, sklearn, sys; print(sys.version.split()[0], torch.__version__, torchvision.__version__, sklearn.__version__)" > "$out/versions.txt"
for ds in mnist fashion-mnist; do
  python -m perfstudy train --dataset "$ds" --model resnet18 --batch-size 16 --optimizer adam \
    --lr 1e-3 --epochs 10 --json > "$out/resnet18-$ds.json" 2> "$out/resnet18-$ds.err"
  echo "resnet18 $ds: rc=$?"
done
for ds in mnist fashion-mnist; do
  python -m perfstudy svm --dataset "$ds" --kernel rbf --C 10 --json \
    > "$out/svm-rbf-C10-$ds.json" 2> "$out/svm-$ds.err"
  echo "svm $ds: rc=$?"
done
