/*
 * backtest.h: `voca backtest`, the rules over a JSON Lines feed with no
 * delivery: what would have opened, when, and why.
 */
#ifndef VOCA_BACKTEST_H
#define VOCA_BACKTEST_H

int backtest_main(int argc, char **argv);

#endif
