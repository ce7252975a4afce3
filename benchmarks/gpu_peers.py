"""PyTorch on the same GPU, for gpu_check.py's table: W1-W3 eager and torch.compile'd, the
4096^3 matmul (+ bias + relu) at float32 precision "highest" and "high", and the W4 MLP
step eager and captured whole in one CUDA graph (the issue's peer figures).

It runs in its own process because importing torch changes which driver Triton uses;
gpu_check.py starts it when torch is installed. Times are medians of CUDA-event
measurements of 10 calls (5 trials), inputs already on the device, as gpu_check's are.

    python benchmarks/gpu_peers.py --json peers.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the rows as JSON to this file")
    parser.add_argument("--budget", type=float, default=150.0, help="stop starting new rows after this (s)")
    args = parser.parse_args(argv)
    import torch
    import torch.nn.functional as F

    t_start = time.perf_counter()
    rows: list[dict] = []
    dev = torch.device("cuda")

    def row(name, value, detail=""):
        rows.append(dict(section="torch", name=name, value=value, status="", detail=detail))
        print(f"  torch    {name:<40} {value:<28} {detail}", flush=True)

    def kernel_ms(fn, repeat=10, trials=5):
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(trials):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(repeat):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / repeat)
        return statistics.median(times)

    def guarded(name, fn):
        if time.perf_counter() - t_start > args.budget:
            row(name, "skipped", "time budget")
            return
        try:
            fn()
        except Exception as e:  # a peer failing must not hide the others
            row(name, type(e).__name__, str(e).splitlines()[0][:120] if str(e) else "")

    g = torch.Generator(device=dev).manual_seed(1)
    n1, (r2, c2) = 67_108_864, (32768, 4096)

    def w1(x, w, b):
        return F.gelu(x * w + b, approximate="tanh") * torch.sigmoid(x)

    def w2(x, w, b):
        return F.layer_norm(x, (c2,), w, b, 1e-5)

    def w3(x):
        return torch.softmax(x, -1)

    cases = {
        "W1 pointwise 67,108,864": (w1, lambda: (torch.randn(n1, device=dev, generator=g),
                                                torch.tensor(0.8, device=dev), torch.tensor(0.1, device=dev)),
                                    8 * n1),
        f"W2 layernorm {r2}x{c2}": (w2, lambda: (torch.randn(r2, c2, device=dev, generator=g),
                                                 torch.randn(c2, device=dev, generator=g),
                                                 torch.randn(c2, device=dev, generator=g)), 8 * r2 * c2),
        f"W3 softmax {r2}x{c2}": (w3, lambda: (torch.randn(r2, c2, device=dev, generator=g),), 8 * r2 * c2),
    }
    for name, (fn, make, nbytes) in cases.items():
        def run(fn=fn, make=make, nbytes=nbytes, name=name):
            inputs = make()
            for mode, f in (("eager", fn), ("torch.compile", torch.compile(fn))):
                t0 = time.perf_counter()
                f(*inputs)
                torch.cuda.synchronize()
                first = time.perf_counter() - t0
                ms = kernel_ms(lambda: f(*inputs))
                row(f"{name} ({mode})", f"{ms:.3f} ms {nbytes / ms / 1e6:.0f} GB/s",
                    f"first call {first:.1f} s" if mode != "eager" else "")
            del inputs
            torch.cuda.empty_cache()
        guarded(name, run)

    def matmul():
        n = 4096
        a, w, b = (torch.randn(*s, device=dev, generator=g) for s in ((n, n), (n, n), (n,)))
        for precision in ("highest", "high"):
            torch.backends.cuda.matmul.allow_tf32 = precision == "high"
            for what, fn in (("torch.mm", lambda: a @ w.T), ("mm+bias+relu", lambda: F.relu(a @ w.T + b))):
                ms = kernel_ms(fn, repeat=3, trials=3)
                row(f"{what} {n}^3 f32 ({precision})", f"{ms:.3f} ms {2 * n ** 3 / ms / 1e9:.1f} TFLOP/s")
        torch.backends.cuda.matmul.allow_tf32 = False
    guarded("matmul", matmul)

    for batch in (512, 4096):
        def mlp(batch=batch):
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                        torch.nn.ReLU(), torch.nn.Linear(64, 10)).to(dev)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            x = torch.randn(batch, 784, device=dev, generator=g)
            y = torch.randint(0, 10, (batch,), device=dev, generator=g)

            def step():
                opt.zero_grad(set_to_none=False)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                return loss

            eager = kernel_ms(step, repeat=20)
            side = torch.cuda.Stream()  # warm up on a side stream, as torch.cuda.graphs asks
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    step()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            replay = kernel_ms(graph.replay, repeat=50)
            row(f"W4 MLP step batch {batch} (eager)", f"{eager * 1e3:.0f} us/step")
            row(f"W4 MLP step batch {batch} (one CUDA graph)", f"{replay * 1e3:.0f} us/step")
        guarded(f"W4 batch {batch}", mlp)

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, {time.perf_counter() - t_start:.0f} s",
          flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
