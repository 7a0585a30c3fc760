/*
 * hmac.c: HMAC-SHA256 through libcrypto (see hmac.h).
 */
#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <voca/hmac.h>

void hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t len, char hex[65])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	HMAC(EVP_sha256(), key, (int)keylen, msg, len, mac, &n);
	for (unsigned int i = 0; i < n && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	hex[64] = '\0';
}
