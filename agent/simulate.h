/*
 * simulate.h: `voca simulate`, a realistic scored-feedback stream with
 * injected incidents of known kind, key, start and size, for the demo,
 * tests, benchmarks and detection reports. Deterministic for a seed.
 */
#ifndef VOCA_SIMULATE_H
#define VOCA_SIMULATE_H

int simulate_main(int argc, char **argv);

#endif
