/** The trivial job of the throughput benchmarks, shipped as a function or as a module (bundled). */
export const double = (x: number): number => x * 2;
