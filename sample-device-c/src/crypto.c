/*
 * Every key and hash operation of the C sample, through OpenSSL 3's EVP APIs only: base64 (EVP_EncodeBlock /
 * EVP_DecodeBlock), HMAC-SHA256 (EVP_Q_mac), ES256 (EVP_DigestSign, then the DER ECDSA-Sig-Value re-encoded as the
 * JOSE r||s form of RFC 7518 §3.4), P-256 key generation and PEM I/O. No hand-rolled crypto.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include "sd.h"

char *sd_base64(const unsigned char *data, size_t len) {
  char *out = malloc(4 * ((len + 2) / 3) + 1);
  if (out == NULL) return NULL;
  EVP_EncodeBlock((unsigned char *)out, data, (int)len);
  return out;
}

char *sd_base64url(const unsigned char *data, size_t len) {
  char *out = sd_base64(data, len);
  if (out == NULL) return NULL;
  /* RFC 4648 §5: the url-safe alphabet, no padding. */
  for (char *p = out; *p != '\0'; p++) {
    if (*p == '+') *p = '-';
    else if (*p == '/') *p = '_';
    else if (*p == '=') {
      *p = '\0';
      break;
    }
  }
  return out;
}

long sd_base64_decode(const char *text, unsigned char *out, size_t cap) {
  /* Trim surrounding white space, as the Node sample's decodeSymmetricKey does. */
  while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r') text++;
  size_t len = strlen(text);
  while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\n' || text[len - 1] == '\r')) len--;
  if (len == 0 || len > 4096) return -1;
  /* EVP_DecodeBlock wants whole 4-character groups: pad an unpadded key. */
  char padded[4100];
  memcpy(padded, text, len);
  size_t plen = len;
  while (plen % 4 != 0) padded[plen++] = '=';
  padded[plen] = '\0';
  size_t pad = 0;
  if (plen >= 1 && padded[plen - 1] == '=') pad++;
  if (plen >= 2 && padded[plen - 2] == '=') pad++;
  unsigned char buf[3 * 4100 / 4];
  int n = EVP_DecodeBlock(buf, (const unsigned char *)padded, (int)plen);
  if (n < 0 || (size_t)n < pad) return -1;
  size_t bytes = (size_t)n - pad;
  if (bytes == 0 || bytes > cap) return -1;
  /* Canonical only: re-encoding must give the same text (ignoring padding), or it was not a key DPS showed. */
  char *again = sd_base64(buf, bytes);
  if (again == NULL) return -1;
  size_t alen = strlen(again);
  while (alen > 0 && again[alen - 1] == '=') alen--;
  size_t tlen = len;
  while (tlen > 0 && text[tlen - 1] == '=') tlen--;
  int same = alen == tlen && memcmp(again, text, tlen) == 0;
  free(again);
  if (!same) {
    OPENSSL_cleanse(buf, sizeof buf);
    return -1;
  }
  memcpy(out, buf, bytes);
  OPENSSL_cleanse(buf, sizeof buf);
  OPENSSL_cleanse(padded, sizeof padded);
  return (long)bytes;
}

int sd_hmac_sha256(const unsigned char *key, size_t key_len, const unsigned char *data, size_t len, unsigned char out[32]) {
  size_t out_len = 0;
  unsigned char *r = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, data, len, out, 32, &out_len);
  return r != NULL && out_len == 32 ? 0 : -1;
}

static int is_p256(EVP_PKEY *key) {
  if (!EVP_PKEY_is_a(key, "EC")) return 0;
  char group[64] = "";
  size_t glen = 0;
  if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen)) return 0;
  return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

int sd_load_private_key(const char *path, const char *flag, EVP_PKEY **out, sd_error *err) {
  *out = NULL;
  if (path[0] == '\0') return sd_fail(err, SD_USAGE, "%s must name a file", flag);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    int e = errno;
    const char *why = e == ENOENT ? "does not exist" : e == EACCES ? "is not readable" : "cannot be read";
    return sd_fail(err, SD_FILE, "%s %s %s", flag, path, why);
  }
  /* Read the text first so the kind of PEM can be named in the error. */
  char text[16384];
  size_t n = fread(text, 1, sizeof text - 1, f);
  int too_big = !feof(f);
  fclose(f);
  text[n] = '\0';
  int code = SD_OK;
  if (too_big) {
    code = sd_fail(err, SD_FILE, "%s %s is too large to be a PEM private key", flag, path);
  } else if (strstr(text, "-----BEGIN PRIVATE KEY-----") == NULL && strstr(text, "-----BEGIN EC PRIVATE KEY-----") == NULL) {
    code = sd_fail(err, SD_FILE, "%s %s is not a PEM private key (expected -----BEGIN PRIVATE KEY-----)", flag, path);
    sd_hint(err, "Use the <name>.key.pem written by `keygen`, not the .pub.pem.");
  } else {
    BIO *bio = BIO_new_mem_buf(text, (int)n);
    EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    if (key == NULL) {
      code = sd_fail(err, SD_FILE, "%s %s is not a readable private key", flag, path);
    } else if (!is_p256(key)) {
      EVP_PKEY_free(key);
      code = sd_fail(err, SD_FILE, "%s %s is not a P-256 (ES256) private key", flag, path);
    } else {
      *out = key;
    }
  }
  OPENSSL_cleanse(text, sizeof text);
  return code;
}

int sd_es256_sign(EVP_PKEY *key, const unsigned char *data, size_t len, unsigned char sig[64]) {
  int ok = -1;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned char der[80];
  size_t der_len = sizeof der;
  ECDSA_SIG *ecdsa = NULL;
  if (ctx == NULL) goto done;
  if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1) goto done;
  if (EVP_DigestSign(ctx, der, &der_len, data, len) != 1) goto done;
  const unsigned char *p = der;
  ecdsa = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
  if (ecdsa == NULL) goto done;
  const BIGNUM *r = NULL, *s = NULL;
  ECDSA_SIG_get0(ecdsa, &r, &s);
  /* RFC 7518 §3.4: R and S as 32-byte big-endian octet strings, concatenated. */
  if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32) goto done;
  ok = 0;
done:
  ECDSA_SIG_free(ecdsa);
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

char *sd_jwk_thumbprint(EVP_PKEY *key) {
  BIGNUM *x = NULL, *y = NULL;
  char *result = NULL;
  if (!EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) || !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y)) goto done;
  unsigned char xb[32], yb[32];
  if (BN_bn2binpad(x, xb, 32) != 32 || BN_bn2binpad(y, yb, 32) != 32) goto done;
  char *xs = sd_base64url(xb, 32), *ys = sd_base64url(yb, 32);
  if (xs != NULL && ys != NULL) {
    /* RFC 7638 §3.2: the required members in lexicographic order, no white space. */
    char jwk[256];
    int n = snprintf(jwk, sizeof jwk, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", xs, ys);
    unsigned char digest[32];
    unsigned int dlen = 0;
    if (n > 0 && (size_t)n < sizeof jwk && EVP_Digest(jwk, (size_t)n, digest, &dlen, EVP_sha256(), NULL) == 1) {
      result = sd_base64url(digest, dlen);
    }
  }
  free(xs);
  free(ys);
done:
  BN_free(x);
  BN_free(y);
  ERR_clear_error();
  return result;
}

int sd_uuid(char out[37]) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return -1;
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
           b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return 0;
}

/* O_CREAT|O_EXCL: an existing factory key is never replaced. */
static FILE *create_exclusive(const char *path, mode_t mode, sd_error *err) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      sd_fail(err, SD_FILE, "%s already exists; refusing to overwrite a device key", path);
      sd_hint(err, "Choose another --name or --out-dir, or delete the old files yourself.");
    } else {
      sd_fail(err, SD_FILE, "cannot create %s (%s)", path, strerror(errno));
    }
    return NULL;
  }
  FILE *f = fdopen(fd, "w");
  if (f == NULL) close(fd);
  return f;
}

int sd_keygen(const char *dir, const char *name, char *private_path, size_t private_cap, char *public_path,
              size_t public_cap, char **thumbprint, sd_error *err) {
  *thumbprint = NULL;
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) return sd_fail(err, SD_FILE, "cannot create --out-dir %s (%s)", dir, strerror(errno));
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return sd_fail(err, SD_FILE, "--out-dir %s is not a directory", dir);
  if ((size_t)snprintf(private_path, private_cap, "%s/%s.key.pem", dir, name) >= private_cap ||
      (size_t)snprintf(public_path, public_cap, "%s/%s.pub.pem", dir, name) >= public_cap) {
    return sd_fail(err, SD_USAGE, "--out-dir is too long");
  }
  /* Refuse before creating anything, so a refusal leaves no half-written pair. */
  if (access(public_path, F_OK) == 0) {
    sd_fail(err, SD_FILE, "%s already exists; refusing to overwrite a device key", public_path);
    sd_hint(err, "Choose another --name or --out-dir, or delete the old files yourself.");
    return SD_FILE;
  }
  EVP_PKEY *key = EVP_EC_gen("P-256");
  if (key == NULL) return sd_fail(err, SD_INTERNAL, "cannot generate a P-256 key");
  int code = SD_OK;
  FILE *priv = create_exclusive(private_path, 0600, err);
  if (priv == NULL) {
    EVP_PKEY_free(key);
    return err->code;
  }
  /* PEM_write_PrivateKey without a cipher writes unencrypted PKCS#8 ("BEGIN PRIVATE KEY"), as keygen.sh does. */
  int wrote = PEM_write_PrivateKey(priv, key, NULL, NULL, 0, NULL, NULL);
  if (fclose(priv) != 0 || wrote != 1) {
    unlink(private_path);
    code = sd_fail(err, SD_FILE, "cannot write %s", private_path);
  } else {
    FILE *pub = create_exclusive(public_path, 0644, err);
    if (pub == NULL) {
      unlink(private_path);
      code = err->code;
    } else {
      wrote = PEM_write_PUBKEY(pub, key);
      if (fclose(pub) != 0 || wrote != 1) {
        unlink(private_path);
        unlink(public_path);
        code = sd_fail(err, SD_FILE, "cannot write %s", public_path);
      } else {
        *thumbprint = sd_jwk_thumbprint(key);
        if (*thumbprint == NULL) code = sd_fail(err, SD_INTERNAL, "cannot compute the key's thumbprint");
      }
    }
  }
  EVP_PKEY_free(key);
  ERR_clear_error();
  return code;
}
