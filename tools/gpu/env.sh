# Sourced by the device scripts (h200.sh, train.sh): where the binaries, the tokenizer and the
# training images are, on the device machine or (DEVICE=local) here.
#   $bins  every binary to time, the plain one first; $bin  the one that converts and trains
#   $tok   the tokenizer and configs; $py  a python3 with PyTorch (local: the reference venv)
#   cifar_train DIR  unpacks the 48,000 training images (not the 200 a class held out) into DIR
# Binaries and images come from tools/gpu/prepare.sh, gzipped/xz'd and packed to fit the 64 MiB
# the device carries.
OUT="${OUT:-target/gpu}"
mkdir -p "$OUT"
data=$(cd "${DELTAENERGY_DATA:-../shared/data}" 2>/dev/null && pwd || echo ../shared/data)
tok=.gpu/clip-tokenizer
[ -d "$tok" ] || tok="$data/clip-tokenizer"
unxz_to() {  # FILE.xz DEST: xz where installed, else Python's lzma
  if command -v xz >/dev/null; then xz -dc "$1" > "$2"; else
    python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"
  fi
}
if [ "${DEVICE:-h200}" = local ]; then
  py=tools/reference/.venv/bin/python
  bins=target/release/deltaenergy
else
  # The device README's recipe: the Vulkan loader the machine lacks, the NVIDIA ICD it has.
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
  nvidia-smi -L
  py=python3
  bins=""
  for b in deltaenergy deltaenergy-fusion deltaenergy-autotune; do
    [ -f ".gpu/$b.xz" ] || continue
    unxz_to ".gpu/$b.xz" "/tmp/$b" && chmod +x "/tmp/$b" && bins="${bins:+$bins }/tmp/$b"
  done
fi
[ -n "$bins" ] || { echo "no binary: run tools/gpu/prepare.sh first" >&2; exit 1; }
bin=${bins%% *}
cifar_train() {
  if [ -f .gpu/cifar10-train.pack ]; then
    python3 tools/gpu/jpegpack.py unpack .gpu/cifar10-train.pack "$1"
  else  # local: the same 48,000 images, linked
    for d in "$data"/cifar10/train/*/; do
      c=$(basename "$d"); mkdir -p "$1/$c"
      files=("$d"*); ln -sf "${files[@]:200}" "$1/$c/"
    done
  fi
}
