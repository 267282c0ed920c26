/*
 * OpenSSL's X25519, AES-GCM and HMAC on raw bytes, for ODoH's HPKE (lib/odoh/raw-crypto.ts, hpke.ts).
 * node:crypto, on OpenSSL 3.5 (Node 24), looks the algorithm up again on every call and wraps
 * every key in a KeyObject: an AES-GCM seal of a DNS query cost 11.9 µs, importing a 32-byte
 * X25519 public key 17.8, an HMAC built from two hashes 4.4, where the work itself is a
 * fraction of a microsecond (2026-12-05; docs/benchmarks.md). Here the algorithms are fetched
 * once per thread and the contexts reused. No cryptography is written here: every operation
 * is OpenSSL's own, the same library node:crypto calls, resolved against the node binary when
 * the addon loads. The caller checks lengths; these functions check them again and throw.
 *
 *   hmac(hash 0|1|2 for SHA-256/384/512, key, data) -> Buffer
 *   aeadSeal(key 16|32 bytes, nonce 12, aad, plaintext) -> ciphertext || tag (16)
 *   aeadOpen(key, nonce, aad, ciphertext || tag) -> plaintext, or null when it does not open
 *   x25519Ephemeral(peerPublic 32) -> shared (32) || ephemeral public (32), or null
 *   x25519Key(private 32) -> a key (external); x25519Public(key) -> its public key (32)
 *   x25519Derive(key, peerPublic 32) -> shared (32), or null (a small-order point: all zeros)
 */
#define NAPI_VERSION 8
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME raw_crypto
#endif
#include <node_api.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>

#define TAG_LENGTH 16
#define NONCE_LENGTH 12
#define X25519_LENGTH 32
#define HASHES 3

/* What each thread (main, each worker) fetched once and reuses. */
typedef struct {
  EVP_CIPHER *gcm128;
  EVP_CIPHER *gcm256;
  EVP_CIPHER_CTX *cipher;
  EVP_MAC_CTX *hmac[HASHES];
  EVP_PKEY_CTX *keygen;
} State;

static void free_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  State *state = data;
  EVP_CIPHER_free(state->gcm128);
  EVP_CIPHER_free(state->gcm256);
  EVP_CIPHER_CTX_free(state->cipher);
  for (int i = 0; i < HASHES; i++) EVP_MAC_CTX_free(state->hmac[i]);
  EVP_PKEY_CTX_free(state->keygen);
  free(state);
}

static State *state_of(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

/*
 * Every failure leaves OpenSSL's error queue empty: node:crypto reads that queue after its own
 * calls on this thread, and would report our error as theirs.
 */
static napi_value fail(napi_env env, const char *message) {
  ERR_clear_error();
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value null_value(napi_env env) {
  ERR_clear_error();
  napi_value result;
  napi_get_null(env, &result);
  return result;
}

/* The bytes of a Buffer argument. */
static int bytes_of(napi_env env, napi_value value, const unsigned char **data, size_t *length) {
  bool is_buffer = false;
  if (napi_is_buffer(env, value, &is_buffer) != napi_ok || !is_buffer) return 0;
  void *raw = NULL;
  if (napi_get_buffer_info(env, value, &raw, length) != napi_ok) return 0;
  *data = raw != NULL ? raw : (const unsigned char *)"";
  return 1;
}

static int args_of(napi_env env, napi_callback_info info, size_t expected, napi_value *argv) {
  size_t argc = expected;
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == expected;
}

static napi_value new_buffer(napi_env env, size_t length, unsigned char **data) {
  napi_value result;
  void *raw = NULL;
  if (napi_create_buffer(env, length, &raw, &result) != napi_ok) return NULL;
  *data = raw;
  return result;
}

/*
 * hmac(hash, key, data[, out]): with `out`, a Buffer of exactly the hash's length, the MAC is
 * written there and `out` returned. HKDF takes several a query; a Buffer made here costs a
 * malloc and a prototype change each (0.8 µs of a 32-byte HMAC's 1.2 µs), where the caller's
 * `Buffer.allocUnsafe` is a slice of Node's pool.
 */
static const char HMAC_USAGE[] = "hmac(hash, key, data[, out]): a hash of 0, 1 or 2, two Buffers, and a Buffer of the hash's length";

static napi_value js_hmac(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  size_t argc = 4;
  int32_t hash = -1;
  const unsigned char *key, *data;
  size_t key_length, data_length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || (argc != 3 && argc != 4) || napi_get_value_int32(env, argv[0], &hash) != napi_ok ||
      hash < 0 || hash >= HASHES || !bytes_of(env, argv[1], &key, &key_length) || !bytes_of(env, argv[2], &data, &data_length))
    return fail(env, HMAC_USAGE);
  static const size_t lengths[HASHES] = {32, 48, 64};
  EVP_MAC_CTX *mac = state_of(env)->hmac[hash];
  /* The length is the hash's: the context knows it only once a key is set. */
  size_t length = lengths[hash];
  unsigned char *out;
  napi_value result;
  if (argc == 4) {
    const unsigned char *given;
    size_t given_length;
    if (!bytes_of(env, argv[3], &given, &given_length) || given_length != length)
      return fail(env, HMAC_USAGE);
    out = (unsigned char *)given;
    result = argv[3];
  } else {
    result = new_buffer(env, length, &out);
    if (result == NULL) return NULL;
  }
  /* An empty key is an HMAC key (HKDF's empty salt): OpenSSL takes it when it is not NULL. */
  if (!EVP_MAC_init(mac, key, key_length, NULL) || !EVP_MAC_update(mac, data, data_length) || !EVP_MAC_final(mac, out, &length, length))
    return fail(env, "HMAC failed");
  return result;
}

/* The four arguments of aeadSeal and aeadOpen, checked: a key for one of the ciphers, a 12-byte nonce. */
typedef struct {
  EVP_CIPHER *cipher;
  const unsigned char *key, *nonce, *aad, *data;
  size_t aad_length, data_length;
} AeadArgs;

static int aead_args_of(napi_env env, napi_callback_info info, State *state, AeadArgs *args) {
  napi_value argv[4];
  size_t key_length, nonce_length;
  if (!args_of(env, info, 4, argv) || !bytes_of(env, argv[0], &args->key, &key_length) || !bytes_of(env, argv[1], &args->nonce, &nonce_length) ||
      !bytes_of(env, argv[2], &args->aad, &args->aad_length) || !bytes_of(env, argv[3], &args->data, &args->data_length))
    return 0;
  args->cipher = key_length == 16 ? state->gcm128 : key_length == 32 ? state->gcm256 : NULL;
  return args->cipher != NULL && nonce_length == NONCE_LENGTH && args->data_length <= 0x7fffffff && args->aad_length <= 0x7fffffff;
}

static napi_value js_aead_seal(napi_env env, napi_callback_info info) {
  State *state = state_of(env);
  AeadArgs a;
  if (!aead_args_of(env, info, state, &a)) return fail(env, "aeadSeal(key, nonce, aad, plaintext): a key of 16 or 32 bytes, a nonce of 12");
  unsigned char *out;
  napi_value result = new_buffer(env, a.data_length + TAG_LENGTH, &out);
  if (result == NULL) return NULL;
  EVP_CIPHER_CTX *ctx = state->cipher;
  int written = 0, last = 0;
  if (!EVP_EncryptInit_ex2(ctx, a.cipher, a.key, a.nonce, NULL) || !EVP_EncryptUpdate(ctx, NULL, &written, a.aad, (int)a.aad_length) ||
      !EVP_EncryptUpdate(ctx, out, &written, a.data, (int)a.data_length) || !EVP_EncryptFinal_ex(ctx, out + written, &last) ||
      !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LENGTH, out + a.data_length))
    return fail(env, "AES-GCM sealing failed");
  return result;
}

static napi_value js_aead_open(napi_env env, napi_callback_info info) {
  State *state = state_of(env);
  AeadArgs a;
  if (!aead_args_of(env, info, state, &a)) return fail(env, "aeadOpen(key, nonce, aad, sealed): a key of 16 or 32 bytes, a nonce of 12");
  if (a.data_length < TAG_LENGTH) return null_value(env);
  size_t length = a.data_length - TAG_LENGTH;
  unsigned char *out;
  napi_value result = new_buffer(env, length, &out);
  if (result == NULL) return NULL;
  EVP_CIPHER_CTX *ctx = state->cipher;
  int written = 0, last = 0;
  /* The tag is copied: OpenSSL's control call takes a non-const pointer. */
  unsigned char tag[TAG_LENGTH];
  memcpy(tag, a.data + length, TAG_LENGTH);
  if (!EVP_DecryptInit_ex2(ctx, a.cipher, a.key, a.nonce, NULL) || !EVP_DecryptUpdate(ctx, NULL, &written, a.aad, (int)a.aad_length) ||
      !EVP_DecryptUpdate(ctx, out, &written, a.data, (int)length) || !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LENGTH, tag))
    return fail(env, "AES-GCM opening failed");
  if (EVP_DecryptFinal_ex(ctx, out + written, &last) <= 0) {
    OPENSSL_cleanse(out, length);
    return null_value(env);
  }
  return result;
}

/* `private_key`'s Diffie-Hellman with the raw `peer`, into out; 0 when it fails or is all zeros (RFC 9180 §7.1.4). */
static int x25519_derive(EVP_PKEY *private_key, const unsigned char *peer, unsigned char *out) {
  static const unsigned char zero[X25519_LENGTH];
  EVP_PKEY *public_key = EVP_PKEY_new_raw_public_key_ex(NULL, "X25519", NULL, peer, X25519_LENGTH);
  EVP_PKEY_CTX *ctx = public_key != NULL ? EVP_PKEY_CTX_new_from_pkey(NULL, private_key, NULL) : NULL;
  size_t length = X25519_LENGTH;
  int ok = ctx != NULL && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_derive_set_peer(ctx, public_key) > 0 &&
           EVP_PKEY_derive(ctx, out, &length) > 0 && length == X25519_LENGTH && CRYPTO_memcmp(out, zero, X25519_LENGTH) != 0;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(public_key);
  if (!ok) ERR_clear_error();
  return ok;
}

/* The one argument, a Buffer of 32 bytes (an X25519 key); NULL when it is not. */
static const unsigned char *x25519_arg(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  const unsigned char *bytes;
  size_t length;
  return args_of(env, info, 1, argv) && bytes_of(env, argv[0], &bytes, &length) && length == X25519_LENGTH ? bytes : NULL;
}

static napi_value js_x25519_ephemeral(napi_env env, napi_callback_info info) {
  const unsigned char *peer = x25519_arg(env, info);
  if (peer == NULL) return fail(env, "x25519Ephemeral(peerPublic): a Buffer of 32 bytes");
  unsigned char *out;
  napi_value result = new_buffer(env, 2 * X25519_LENGTH, &out);
  if (result == NULL) return NULL;
  EVP_PKEY *ephemeral = NULL;
  size_t length = X25519_LENGTH;
  int ok = EVP_PKEY_generate(state_of(env)->keygen, &ephemeral) > 0 && x25519_derive(ephemeral, peer, out) &&
           EVP_PKEY_get_raw_public_key(ephemeral, out + X25519_LENGTH, &length) > 0 && length == X25519_LENGTH;
  EVP_PKEY_free(ephemeral); /* frees and cleanses the private half */
  return ok ? result : null_value(env);
}

static void free_key(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  EVP_PKEY_free(data);
}

static napi_value js_x25519_key(napi_env env, napi_callback_info info) {
  const unsigned char *raw = x25519_arg(env, info);
  if (raw == NULL) return fail(env, "x25519Key(private): a Buffer of 32 bytes");
  EVP_PKEY *key = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", NULL, raw, X25519_LENGTH);
  if (key == NULL) return fail(env, "X25519 key import failed");
  napi_value result;
  if (napi_create_external(env, key, free_key, NULL, &result) != napi_ok) {
    EVP_PKEY_free(key);
    return NULL;
  }
  return result;
}

static EVP_PKEY *key_of(napi_env env, napi_value value) {
  napi_valuetype type;
  void *key = NULL;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external || napi_get_value_external(env, value, &key) != napi_ok) return NULL;
  return key;
}

static napi_value js_x25519_public(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  EVP_PKEY *key;
  if (!args_of(env, info, 1, argv) || (key = key_of(env, argv[0])) == NULL) return fail(env, "x25519Public(key): a key from x25519Key");
  unsigned char *out;
  napi_value result = new_buffer(env, X25519_LENGTH, &out);
  size_t length = X25519_LENGTH;
  if (result == NULL) return NULL;
  if (EVP_PKEY_get_raw_public_key(key, out, &length) <= 0 || length != X25519_LENGTH) return fail(env, "X25519 public key export failed");
  return result;
}

static napi_value js_x25519_derive(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  EVP_PKEY *key;
  const unsigned char *peer;
  size_t peer_length;
  if (!args_of(env, info, 2, argv) || (key = key_of(env, argv[0])) == NULL || !bytes_of(env, argv[1], &peer, &peer_length) ||
      peer_length != X25519_LENGTH)
    return fail(env, "x25519Derive(key, peerPublic): a key from x25519Key and a Buffer of 32 bytes");
  unsigned char *out;
  napi_value result = new_buffer(env, X25519_LENGTH, &out);
  if (result == NULL) return NULL;
  return x25519_derive(key, peer, out) ? result : null_value(env);
}

static EVP_MAC_CTX *hmac_for(EVP_MAC *mac, const char *digest) {
  EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0), OSSL_PARAM_construct_end()};
  if (ctx != NULL && !EVP_MAC_CTX_set_params(ctx, params)) {
    EVP_MAC_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

static napi_value init(napi_env env, napi_value exports) {
  State *state = calloc(1, sizeof *state);
  if (state == NULL) return fail(env, "out of memory");
  state->gcm128 = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
  state->gcm256 = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  state->cipher = EVP_CIPHER_CTX_new();
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  const char *digests[HASHES] = {"SHA256", "SHA384", "SHA512"};
  for (int i = 0; i < HASHES && mac != NULL; i++) state->hmac[i] = hmac_for(mac, digests[i]);
  EVP_MAC_free(mac); /* each context holds its own reference */
  state->keygen = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL);
  int ready = state->gcm128 && state->gcm256 && state->cipher && state->hmac[0] && state->hmac[1] && state->hmac[2] && state->keygen &&
              EVP_PKEY_keygen_init(state->keygen) > 0;
  if (!ready || napi_set_instance_data(env, state, free_state, NULL) != napi_ok) {
    free_state(env, state, NULL);
    return fail(env, "OpenSSL lacks AES-GCM, HMAC or X25519 here");
  }
  napi_property_descriptor props[] = {
      {"hmac", NULL, js_hmac, NULL, NULL, NULL, napi_default, NULL},
      {"aeadSeal", NULL, js_aead_seal, NULL, NULL, NULL, napi_default, NULL},
      {"aeadOpen", NULL, js_aead_open, NULL, NULL, NULL, napi_default, NULL},
      {"x25519Ephemeral", NULL, js_x25519_ephemeral, NULL, NULL, NULL, napi_default, NULL},
      {"x25519Key", NULL, js_x25519_key, NULL, NULL, NULL, napi_default, NULL},
      {"x25519Public", NULL, js_x25519_public, NULL, NULL, NULL, napi_default, NULL},
      {"x25519Derive", NULL, js_x25519_derive, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
