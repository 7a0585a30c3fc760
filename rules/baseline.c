/*
 * baseline.c: the count statistics shared by rule kinds (BASELINES.md 1.3).
 *
 * nb_upper_tail sums the probability mass upward from x in log space, so
 * tails of 1e-12 keep their digits (1 - CDF would lose them all).
 */
#include <math.h>

#include <voca/rule.h>

double nb_upper_tail(double x, double m, double phi)
{
	double sum = 0, logp, term;

	if (x <= 0)
		return 1;
	if (m <= 0)
		return 0;
	if (phi < 1.0001) {
		/* Poisson(m): log P(k) = k log m - m - lgamma(k + 1) */
		logp = x * log(m) - m - lgamma(x + 1);
		term = exp(logp);
		for (double k = x; k < x + 10000; k++) {
			sum += term;
			term *= m / (k + 1);
			if (term < sum * 1e-12 && k > m)
				break;
		}
		return sum > 1 ? 1 : sum;
	}
	/* NB with mean m, variance phi*m: r = m / (phi - 1), success p = 1 / phi. */
	double r = m / (phi - 1), q = 1 - 1 / phi;

	logp = lgamma(x + r) - lgamma(r) - lgamma(x + 1) + r * log(1 / phi) + x * log(q);
	term = exp(logp);
	for (double k = x; k < x + 100000; k++) {
		sum += term;
		term *= (k + r) / (k + 1) * q;
		if (term < sum * 1e-12 && k > m)
			break;
	}
	return sum > 1 ? 1 : sum;
}

double binom_upper_tail(double k, double n, double p)
{
	double sum = 0, term;

	if (k <= 0)
		return 1;
	if (k > n || p <= 0)
		return 0;
	if (p >= 1)
		return 1;
	/* log C(n, k) p^k (1-p)^(n-k), then the ratio of successive terms. */
	term = exp(lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1) + k * log(p) +
	           (n - k) * log1p(-p));
	for (double i = k; i <= n; i++) {
		sum += term;
		term *= (n - i) / (i + 1) * p / (1 - p);
		if (term < sum * 1e-14)
			break;
	}
	return sum > 1 ? 1 : sum;
}

double wilson_lower(double k, double n, double z)
{
	double ph, d, c, r;

	if (n <= 0)
		return 0;
	ph = k / n;
	d = 1 + z * z / n;
	c = ph + z * z / (2 * n);
	r = z * sqrt(ph * (1 - ph) / n + z * z / (4 * n * n));
	return (c - r) / d;
}
