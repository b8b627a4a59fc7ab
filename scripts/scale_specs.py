#!/usr/bin/env python3
"""Generated specs of growing size for compile-time work (issue 14, fault 3).

  scripts/scale_specs.py OUTDIR [--big]

writes chains of tanh ops, MLPs, branchy (residual) graphs and clip_norm models with every
optimizer into OUTDIR. The default sizes stay small enough for a compiler with cubic fusion
(the baseline of scripts/compare_dumps); --big adds the bench's sizes."""
import os
import sys

OPTIMIZERS = {
    "sgd": "sgd(lr=0.01)",
    "momentum": "momentum(lr=0.01, momentum=0.9)",
    "nesterov": "momentum(lr=0.01, momentum=0.9, nesterov=true)",
    "adam": "adam(lr=0.001)",
    "adamw": "adamw(lr=0.001)",
}


def chain(n, opt="sgd(lr=0.01)"):
    lines = [f"model chain_{n}", "", "input x : f32[16, 32]", "param p : f32[32] = normal(0, 0.5)", "",
             "h0 = tanh(add(x, p))"]
    for i in range(1, n):
        lines.append(f"h{i} = tanh(h{i - 1})")
    lines += [f"loss = mean(square(h{n - 1}))", "", f"output h{n - 1}", f"minimize loss with {opt}"]
    return "\n".join(lines) + "\n"


def mlp(layers, width=32, opt="adam(lr=0.001)", name=None):
    name = name or f"mlp_{layers}"
    lines = [f"model {name}", "", "input x : f32[16, 64]", "input y : i32[16]", ""]
    prev = 64
    for i in range(layers):
        out = 10 if i == layers - 1 else width
        lines.append(f"param w{i} : f32[{prev}, {out}] = glorot_uniform")
        lines.append(f"param b{i} : f32[{out}] = zeros")
        prev = out
    lines.append("")
    h = "x"
    for i in range(layers):
        pre = f"add(matmul({h}, w{i}), b{i})"
        if i == layers - 1:
            lines.append(f"logits = {pre}")
        else:
            lines.append(f"h{i} = relu({pre})")
            h = f"h{i}"
    lines += ["loss = softmax_cross_entropy(logits, y)", "", "output probs = softmax(logits, axis=1)",
              f"minimize loss with {opt}"]
    return "\n".join(lines) + "\n"


def branchy(blocks, width=24, opt="adam(lr=0.001)"):
    """Residual blocks with two branches each, a value read by several kernels."""
    lines = [f"model branchy_{blocks}", "", f"input x : f32[8, {width}]", f"input t : f32[8, {width}]", ""]
    for i in range(blocks):
        lines.append(f"param wa{i} : f32[{width}, {width}] = glorot_uniform")
        lines.append(f"param wb{i} : f32[{width}, {width}] = glorot_uniform")
        lines.append(f"param s{i} : f32[{width}] = ones")
    lines.append("")
    h = "x"
    for i in range(blocks):
        lines.append(f"a{i} = tanh(matmul({h}, wa{i}))")
        lines.append(f"b{i} = sigmoid(matmul({h}, wb{i}))")
        lines.append(f"c{i} = add(mul(a{i}, b{i}), mul({h}, s{i}))")
        lines.append(f"r{i} = add(c{i}, mul(mean({h}), 0.1))")
        h = f"r{i}"
    lines += [f"loss = mse({h}, t)", "", f"output {h}", f"minimize loss with {opt}"]
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)  # an option is not OUTDIR: `--help` once wrote the specs into ./--help
    out = sys.argv[1]
    big = "--big" in sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    specs = {}
    for n in (1, 2, 7, 40, 120):
        specs[f"chain_{n}"] = chain(n)
    for n in (1, 2, 5, 12):
        specs[f"mlp_{n}"] = mlp(n)
    for n in (1, 4, 10):
        specs[f"branchy_{n}"] = branchy(n)
    for key, opt in OPTIMIZERS.items():
        specs[f"mlp_4_{key}"] = mlp(4, opt=opt, name=f"mlp_4_{key}")
        clipped = opt[:-1] + ", clip_norm=1.0)"
        specs[f"clip_mlp_4_{key}"] = mlp(4, opt=clipped, name=f"clip_mlp_4_{key}")
        specs[f"clip_branchy_3_{key}"] = branchy(3, opt=clipped).replace("model branchy_3", f"model clip_branchy_3_{key}")
    specs["clip_chain_30"] = chain(30, "adam(lr=0.001, clip_norm=0.5)").replace("chain_30", "clip_chain_30")
    if big:
        for n in (1000, 10000):
            specs[f"chain_{n}"] = chain(n)
        for n in (10, 100, 200):
            specs[f"mlp_{n}"] = mlp(n)
        specs["branchy_100"] = branchy(100)
    for name, text in specs.items():
        with open(os.path.join(out, name + ".gir"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
