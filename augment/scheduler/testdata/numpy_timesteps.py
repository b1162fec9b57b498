#!/usr/bin/env python3
"""Writes numpy_timesteps.json: diffusers' EulerDiscreteScheduler.set_timesteps
timesteps for 'linspace' and 'trailing' spacing, for many (steps, train steps) pairs.

numpy is not installed where diagd is built, so this transcribes the numpy code paths
diffusers hits, in plain Python floats (IEEE float64, the same operations numpy's
float64 arrays perform element by element):

  np.linspace(0, n-1, steps, dtype=np.float32)   numpy/_core/function_base.py:
      div = steps-1; step = (stop-start)/div; y = arange(steps)*step + start;
      y[-1] = stop; (steps == 1: y = [start]); then astype(float32)
  np.arange(n, 0, -n/steps)                      numpy/_core/src/multiarray/ctors.c
      length = ceil((stop-start)/step); y[0] = start; y[1] = start+step;
      y[i] = start + i*(y[1]-y[0]) (the DOUBLE fill function)
  .round()                                       np.rint: half to even (= Python round)
  float32 cast                                   struct.pack('f'): round to nearest

Run: python3 numpy_timesteps.py > numpy_timesteps.json
"""
import json, math, struct


def f32(x):
    return struct.unpack('f', struct.pack('f', x))[0]


def linspace(start, stop, num):
    div = num - 1
    delta = float(stop - start)
    if div <= 0:
        return [i * delta + start for i in range(num)]
    step = delta / div
    if step == 0:
        y = [i / div * delta + start for i in range(num)]
    else:
        y = [i * step + start for i in range(num)]
    y[-1] = float(stop)
    return y


def arange(start, stop, step):
    length = math.ceil((stop - start) / step)
    if length <= 0:
        return []
    y = [float(start)] * length
    if length > 1:
        y[1] = start + step
    d = y[1] - y[0] if length > 1 else 0.0
    for i in range(2, length):
        y[i] = y[0] + i * d
    return y


def main():
    out = []
    for n in (1000, 999):
        for steps in range(1, 61):
            lin = [f32(v) for v in linspace(0, n - 1, steps)][::-1]
            trail = [f32(round(v)) - 1 for v in arange(n, 0, -(n / steps))]
            out.append({"train": n, "steps": steps, "linspace": lin, "trailing": trail})
    json.dump(out, __import__("sys").stdout, separators=(",", ":"))


main()
