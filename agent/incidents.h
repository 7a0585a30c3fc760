/*
 * incidents.h: `voca incidents` and `voca review`, what the rules decided
 * and why, read from the store: incidents, what muted each change, where
 * each was delivered; and the reports held for a person to review.
 */
#ifndef VOCA_INCIDENTS_H
#define VOCA_INCIDENTS_H

int incidents_main(int argc, char **argv);
int review_main(int argc, char **argv);

#endif
