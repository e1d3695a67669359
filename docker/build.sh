#!/usr/bin/env bash
# Build the trainer image from docker/Dockerfile, with the repository as the build context.
#
#   bash docker/build.sh [--base IMAGE] [--tag TAG] [--debootstrap]
#
#   --base IMAGE    the base image (default: debian-local:bookworm with --debootstrap,
#                   else debian:bookworm-slim); a CUDA image such as
#                   nvidia/cuda:12.8.1-runtime-ubuntu24.04 works too
#   --tag TAG       the image's tag (default: latentops-trainer)
#   --debootstrap   first build the base image locally, for machines that reach no image
#                   registry: debootstrap a minimal Debian bookworm and `docker import` it as
#                   debian-local:bookworm (skipped when that image exists; needs root)
#
# The build runs with --network host (apt and pip reach their registries as the host does).
# If pip on this host trusts a CA bundle of its own (pip's `cert` setting or PIP_CERT), it is
# put in the context for the install only; the final image does not contain it.
set -euo pipefail
cd "$(dirname "$0")/.."

base="" tag=latentops-trainer bootstrap=0
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --debootstrap) bootstrap=1; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "docker/build.sh: unknown option '$1' (valid: --base IMAGE, --tag TAG, --debootstrap)" >&2; exit 2 ;;
  esac
done

if [ "$bootstrap" = 1 ]; then
  base="${base:-debian-local:bookworm}"
  if [ -z "$(docker images -q "$base")" ]; then
    command -v debootstrap >/dev/null || { echo "docker/build.sh: --debootstrap needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    echo "build.sh: debootstrapping Debian bookworm into $root"
    debootstrap --variant=minbase bookworm "$root" >/dev/null
    tar -C "$root" -c . | docker import - "$base" >/dev/null
    rm -rf "$root"; trap - EXIT
    echo "build.sh: base image $base imported"
  fi
fi
base="${base:-debian:bookworm-slim}"

cert="${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}"
rm -rf .docker-build
trap 'rm -rf .docker-build' EXIT
if [ -n "$cert" ] && [ -f "$cert" ]; then
  mkdir -p .docker-build && cp "$cert" .docker-build/pip-cert.pem
fi

echo "build.sh: building $tag from $base"
DOCKER_BUILDKIT=0 docker build --network host -f docker/Dockerfile \
  --build-arg BASE_IMAGE="$base" -t "$tag" .
