# Runs on the GPU machine from the repository root: bash .gpu/run.sh [all|shared] (see bench/gpu/pack.sh).
cd .gpu
N=$(command -v node || true)
if [ -z "$N" ]; then python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('node.xz'),open('/tmp/node','wb'))" && chmod +x /tmp/node && N=/tmp/node; fi
O=${OUT:-/tmp}
$N -v; nvidia-smi --query-gpu=index,name,memory.total,power.limit,uuid,driver_version --format=csv,noheader,nounits
if [ "${1:-all}" = all ]; then
  echo "== hardware (provider detectHardware + validateHardware)"; $N probe/hw.mjs
  echo "== idle window"; $N probe/nvml-probe.mjs --seconds 5 2>&1 | tee "$O/idle.txt"
  echo "== full matmul"; $N probe/nvml-probe.mjs --seconds 15 --workload "python3 mm.py 10 1.0" 2>&1 | tee "$O/full.txt"
  echo "== half duty matmul"; $N probe/nvml-probe.mjs --seconds 15 --workload "python3 mm.py 10 0.5" 2>&1 | tee "$O/half.txt"
fi
echo "== two kernels sharing the GPU (duty 1.0 and 0.25)"; $N probe/shared-probe.mjs --seconds 12 2>&1 | tee "$O/shared.txt"
