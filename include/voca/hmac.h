/*
 * hmac.h: HMAC-SHA256 (OpenSSL's libcrypto underneath), for signing what
 * voca sends to a generic webhook.
 */
#ifndef VOCA_HMAC_H
#define VOCA_HMAC_H

#include <stddef.h>

/* Writes the 64 lower-case hex digits and a NUL into hex. */
void hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t len, char hex[65]);

#endif
