"""`make bench`: fill rate (discrete-event simulation cross-checked on Temporal), throughput, scale,
cost per email and memory, measured side by side in one run. See docs/benchmarks.md."""
