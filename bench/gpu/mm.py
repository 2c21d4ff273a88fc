import sys, time, torch
dur, duty = float(sys.argv[1]), float(sys.argv[2])
a = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16)
torch.cuda.synchronize()
if '--wait-ready' in sys.argv: print('ready', flush=True)
t0 = time.time(); end = t0 + dur; n = 0
while time.time() < end:
    s = time.time()
    while time.time() - s < 0.1 * duty:
        for _ in range(4): a @ a
        torch.cuda.synchronize(); n += 4
    rest = 0.1 - (time.time() - s)
    if rest > 0: time.sleep(rest)
el = time.time() - t0
print(f"mm.py: {n} matmuls 8192^3 bf16 in {el:.2f}s, {n*2*8192**3/el/1e12:.0f} TFLOP/s avg, duty {duty}", flush=True)
