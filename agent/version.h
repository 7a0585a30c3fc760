/* version.h: voca's version, for --version and the User-Agent. */
#ifndef VOCA_VERSION_H
#define VOCA_VERSION_H

#define VOCA_VERSION "0.2.0"

#endif
