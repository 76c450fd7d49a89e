#!/bin/sh
# The journey of examples/quantize_torchscript.sh on a user's own images: makes a small image folder
# (examples/image_folder.py: 10 Fashion-MNIST classes as PNG files) and quantizes the user's TorchScript
# model on it with --dataset folder:DIR. Usage: examples/quantize_image_folder.sh [AUTOQNN] [FOLDER]
set -eu
AUTOQNN=${1:-build/autoqnn}
FOLDER=${2:-$(mktemp -d)/images}
[ -d "$FOLDER/train" ] || /usr/bin/python3 "$(dirname "$0")/image_folder.py" "$FOLDER" --per-class 200 --test-per-class 50
exec "$(dirname "$0")/quantize_torchscript.sh" "$AUTOQNN" "folder:$FOLDER"
