#!/usr/bin/env bash
# Packs what the NVML check needs for a GPU machine that has no Node and no network into
# .gpu/ (git-ignored): this Node binary (xz), the probe and hardware check bundled by
# esbuild, koffi's linux-x64 build, the matmul workload and the run script. Then, with the
# device tool: run `bash .gpu/run.sh` with carry [".gpu"]. Results: bench/results/nvml-*.txt,
# docs/metering.md "On real hardware".
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/probe/node_modules/koffi/build/koffi
xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > .gpu/node.xz
cp node_modules/koffi/{index.js,indirect.js,package.json} .gpu/probe/node_modules/koffi/
cp -r node_modules/koffi/build/koffi/linux_x64 .gpu/probe/node_modules/koffi/build/koffi/
banner="import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);"
for f in provider-kernel/src/meter/nvml-probe.ts provider-kernel/src/meter/sampler-worker.ts bench/gpu/hw.ts bench/gpu/shared-probe.ts; do
  npx esbuild "$f" --bundle --platform=node --format=esm --external:koffi --log-level=warning \
    --outfile=".gpu/probe/$(basename "$f" .ts).mjs" --banner:js="$banner"
done
cp bench/gpu/mm.py bench/gpu/run.sh .gpu/
du -sh .gpu
