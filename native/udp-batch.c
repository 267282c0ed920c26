/*
 * Batched UDP for Veil's udp:// listener: one recvmmsg(2) reads up to BATCH datagrams and one
 * JavaScript call handles them all; the answers JavaScript queued meanwhile leave in one
 * sendmmsg(2). node:dgram costs a system call, a libuv callback, an address string and a
 * JavaScript call per datagram, which on cache hits is most of the time a query takes.
 *
 * Memory is JavaScript's: the caller hands in the receive and send buffers, and the addon keeps
 * references to them for the socket's life. The layout of the shared arrays (all int32):
 *
 *   receive meta, per datagram i at i * META_INTS:  length, family (4|6), port, address words 0-3
 *   send meta, [0] = count queued, then per answer at 1 + i * META_INTS:
 *                                                   offset in send data, length, family, port,
 *                                                   address words 0-3
 *
 * Address words hold the address bytes in network order (an IPv4 address is word 0).
 * Written against Node-API (ABI-stable across Node versions) and libuv's uv_poll_t.
 */
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#define NAPI_VERSION 8
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME udp_batch
#endif
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define META_INTS 8
/* Batches read per readiness event before the event loop gets a turn (fairness). */
#define BATCHES_PER_WAKE 8

typedef struct {
  napi_env env;
  uv_poll_t poll;
  int fd;
  int closing;
  /* The struct is freed once both have happened: libuv is done with the handle, and the
   * JavaScript handle object was collected (so no flush or close call can reach it). */
  int handle_closed;
  int finalized;
  napi_ref self;          /* the JavaScript object, kept alive while the socket is open */
  napi_ref on_batch;      /* function(count) */
  napi_ref buffers[4];    /* receive data, receive meta, send data, send meta */
  napi_async_context async_context;
  uint8_t *recv_data;
  size_t slot_bytes;
  int32_t *recv_meta;
  uint8_t *send_data;
  size_t send_bytes;
  int32_t *send_meta;
  struct mmsghdr recv_msgs[BATCH];
  struct iovec recv_iov[BATCH];
  struct sockaddr_storage recv_addrs[BATCH];
  struct mmsghdr send_msgs[BATCH];
  struct iovec send_iov[BATCH];
  struct sockaddr_in6 send_addrs[BATCH];
} batch_socket;

#define CHECK(env, call)                                              \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error((env), NULL, "udp-batch: " #call " failed");  \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  const char *code = err == EADDRINUSE ? "EADDRINUSE" : err == EADDRNOTAVAIL ? "EADDRNOTAVAIL" : err == EACCES ? "EACCES" : NULL;
  napi_throw_error(env, code, message);
  return NULL;
}

/* Sends what JavaScript queued in send meta; an answer the kernel refuses is dropped (UDP). */
static void flush(batch_socket *s) {
  int32_t count = s->send_meta[0];
  if (count <= 0 || s->closing) {
    s->send_meta[0] = 0;
    return;
  }
  if (count > BATCH) count = BATCH;
  for (int i = 0; i < count; i++) {
    const int32_t *m = s->send_meta + 1 + i * META_INTS;
    uint32_t offset = (uint32_t)m[0], length = (uint32_t)m[1];
    if ((size_t)offset + length > s->send_bytes) length = 0, offset = 0;
    s->send_iov[i].iov_base = s->send_data + offset;
    s->send_iov[i].iov_len = length;
    struct sockaddr_in6 *a6 = &s->send_addrs[i];
    memset(a6, 0, sizeof *a6);
    socklen_t alen;
    if (m[2] == 4) {
      struct sockaddr_in *a4 = (struct sockaddr_in *)a6;
      a4->sin_family = AF_INET;
      a4->sin_port = htons((uint16_t)m[3]);
      memcpy(&a4->sin_addr, &m[4], 4);
      alen = sizeof *a4;
    } else {
      a6->sin6_family = AF_INET6;
      a6->sin6_port = htons((uint16_t)m[3]);
      memcpy(&a6->sin6_addr, &m[4], 16);
      alen = sizeof *a6;
    }
    struct msghdr *h = &s->send_msgs[i].msg_hdr;
    memset(h, 0, sizeof *h);
    h->msg_name = a6;
    h->msg_namelen = alen;
    h->msg_iov = &s->send_iov[i];
    h->msg_iovlen = 1;
  }
  int sent = 0;
  while (sent < count) {
    int n = sendmmsg(s->fd, s->send_msgs + sent, (unsigned)(count - sent), MSG_DONTWAIT);
    if (n > 0) {
      sent += n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      sent++; /* this answer failed (full buffer, unreachable address): skip it, send the rest */
    }
  }
  s->send_meta[0] = 0;
}

static void call_js(batch_socket *s, int count) {
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value self, fn, arg, result;
  if (napi_get_reference_value(env, s->self, &self) == napi_ok &&
      napi_get_reference_value(env, s->on_batch, &fn) == napi_ok &&
      napi_create_int32(env, count, &arg) == napi_ok) {
    /* make_callback, unlike call_function, runs the microtasks and nextTicks when it returns:
     * answers from the cache, which resolve in microtasks, are queued by then. */
    napi_status status = napi_make_callback(env, s->async_context, self, fn, 1, &arg, &result);
    if (status == napi_pending_exception) {
      napi_value error;
      napi_get_and_clear_last_exception(env, &error);
      napi_fatal_exception(env, error);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_readable(uv_poll_t *poll, int status, int events) {
  batch_socket *s = poll->data;
  if (status < 0 || !(events & UV_READABLE)) return;
  for (int round = 0; round < BATCHES_PER_WAKE && !s->closing; round++) {
    for (int i = 0; i < BATCH; i++) {
      s->recv_iov[i].iov_base = s->recv_data + (size_t)i * s->slot_bytes;
      s->recv_iov[i].iov_len = s->slot_bytes;
      struct msghdr *h = &s->recv_msgs[i].msg_hdr;
      memset(h, 0, sizeof *h);
      h->msg_name = &s->recv_addrs[i];
      h->msg_namelen = sizeof s->recv_addrs[i];
      h->msg_iov = &s->recv_iov[i];
      h->msg_iovlen = 1;
    }
    int n = recvmmsg(s->fd, s->recv_msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return; /* EAGAIN: drained; other errors (ICMP reports) are not ours to act on */
    int kept = 0;
    for (int i = 0; i < n; i++) {
      /* A datagram larger than a slot was cut short: drop it rather than read half a query. */
      if (s->recv_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) continue;
      int32_t *m = s->recv_meta + kept * META_INTS;
      const struct sockaddr_storage *from = &s->recv_addrs[i];
      memset(m, 0, META_INTS * sizeof *m);
      if (from->ss_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)from;
        m[1] = 4;
        m[2] = ntohs(a4->sin_port);
        memcpy(&m[3], &a4->sin_addr, 4);
      } else if (from->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)from;
        m[1] = 6;
        m[2] = ntohs(a6->sin6_port);
        memcpy(&m[3], &a6->sin6_addr, 16);
      } else {
        continue;
      }
      m[0] = (int32_t)s->recv_msgs[i].msg_len;
      if (kept != i) memmove(s->recv_data + (size_t)kept * s->slot_bytes, s->recv_data + (size_t)i * s->slot_bytes, s->recv_msgs[i].msg_len);
      kept++;
    }
    if (kept > 0) call_js(s, kept);
    flush(s);
    if (n < BATCH) return;
  }
}

static void on_closed(uv_handle_t *handle) {
  batch_socket *s = handle->data;
  napi_env env = s->env;
  for (int i = 0; i < 4; i++) napi_delete_reference(env, s->buffers[i]);
  napi_delete_reference(env, s->on_batch);
  napi_delete_reference(env, s->self);
  napi_async_destroy(env, s->async_context);
  s->handle_closed = 1;
  if (s->finalized) free(s);
}

static void on_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  batch_socket *s = data;
  s->finalized = 1;
  if (s->handle_closed) free(s);
}

static napi_value get_buffer(napi_env env, napi_value value, napi_ref *ref, void **data, size_t *length) {
  bool is_buffer = false, is_typed = false;
  napi_is_buffer(env, value, &is_buffer);
  napi_is_typedarray(env, value, &is_typed);
  if (is_buffer) {
    CHECK(env, napi_get_buffer_info(env, value, data, length));
  } else if (is_typed) {
    napi_typedarray_type type;
    napi_value ab;
    size_t offset;
    CHECK(env, napi_get_typedarray_info(env, value, &type, length, data, &ab, &offset));
    if (type != napi_int32_array) {
      napi_throw_type_error(env, NULL, "udp-batch: meta arrays must be Int32Array");
      return NULL;
    }
  } else {
    napi_throw_type_error(env, NULL, "udp-batch: expected a Buffer or an Int32Array");
    return NULL;
  }
  CHECK(env, napi_create_reference(env, value, 1, ref));
  return value;
}

/*
 * open(self, host, port, reusePort, receiveBufferBytes, recvData, recvMeta, sendData, sendMeta,
 *      onBatch) -> [external handle, bound port]
 * `host` is an IP literal; recvData holds BATCH slots of equal size.
 */
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 10) {
    napi_throw_type_error(env, NULL, "udp-batch: open takes 10 arguments");
    return NULL;
  }
  char host[64];
  size_t host_len;
  int32_t port, receive_buffer;
  bool reuse_port;
  CHECK(env, napi_get_value_string_utf8(env, argv[1], host, sizeof host, &host_len));
  CHECK(env, napi_get_value_int32(env, argv[2], &port));
  CHECK(env, napi_get_value_bool(env, argv[3], &reuse_port));
  CHECK(env, napi_get_value_int32(env, argv[4], &receive_buffer));

  struct sockaddr_storage addr;
  socklen_t addr_len;
  memset(&addr, 0, sizeof addr);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
  int family;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    family = a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    addr_len = sizeof *a4;
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    family = a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    addr_len = sizeof *a6;
  } else {
    napi_throw_type_error(env, NULL, "udp-batch: host must be an IP literal");
    return NULL;
  }

  batch_socket *s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, "udp-batch", ENOMEM);
  s->env = env;
  s->fd = -1;
  size_t len;
  void *data;
  if (!get_buffer(env, argv[5], &s->buffers[0], &data, &len)) goto fail;
  s->recv_data = data;
  s->slot_bytes = len / BATCH;
  if (!get_buffer(env, argv[6], &s->buffers[1], &data, &len)) goto fail;
  s->recv_meta = data;
  if (len < BATCH * META_INTS) goto too_small;
  if (!get_buffer(env, argv[7], &s->buffers[2], &data, &len)) goto fail;
  s->send_data = data;
  s->send_bytes = len;
  if (!get_buffer(env, argv[8], &s->buffers[3], &data, &len)) goto fail;
  s->send_meta = data;
  if (len < 1 + BATCH * META_INTS) goto too_small;
  if (s->slot_bytes < 512) goto too_small;
  if (napi_create_reference(env, argv[9], 1, &s->on_batch) != napi_ok) goto fail;
  if (napi_create_reference(env, argv[0], 1, &s->self) != napi_ok) goto fail;
  napi_value resource_name;
  napi_create_string_utf8(env, "veil:udp-batch", NAPI_AUTO_LENGTH, &resource_name);
  if (napi_async_init(env, argv[0], resource_name, &s->async_context) != napi_ok) goto fail;

  s->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) goto fail_errno;
  int one = 1;
  if (reuse_port && setsockopt(s->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail_errno;
  /* The kernel caps this at net.core.rmem_max; a smaller buffer is not an error. */
  setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  if (bind(s->fd, (struct sockaddr *)&addr, addr_len) < 0) goto fail_errno;
  struct sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  if (getsockname(s->fd, (struct sockaddr *)&bound, &bound_len) < 0) goto fail_errno;
  int bound_port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port : ((struct sockaddr_in6 *)&bound)->sin6_port);

  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) goto fail;
  if (uv_poll_init_socket(loop, &s->poll, s->fd) != 0) goto fail;
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);

  napi_value handle, port_value, result;
  CHECK(env, napi_create_external(env, s, on_finalize, NULL, &handle));
  CHECK(env, napi_create_int32(env, bound_port, &port_value));
  CHECK(env, napi_create_array_with_length(env, 2, &result));
  CHECK(env, napi_set_element(env, result, 0, handle));
  CHECK(env, napi_set_element(env, result, 1, port_value));
  return result;

too_small:
  napi_throw_range_error(env, NULL, "udp-batch: a buffer is too small for a batch");
  goto fail;
fail_errno: {
  int err = errno;
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  throw_errno(env, "bind", err);
}
fail:
  if (s->fd >= 0) close(s->fd);
  for (int i = 0; i < 4; i++)
    if (s->buffers[i]) napi_delete_reference(env, s->buffers[i]);
  if (s->on_batch) napi_delete_reference(env, s->on_batch);
  if (s->self) napi_delete_reference(env, s->self);
  if (s->async_context) napi_async_destroy(env, s->async_context);
  free(s);
  return NULL;
}

static batch_socket *unwrap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  if (napi_get_value_external(env, argv[0], &data) != napi_ok) return NULL;
  return data;
}

/* flush(handle): sends the answers queued in send meta now (for answers that come later than
 * their batch, and when the queue is full). */
static napi_value js_flush(napi_env env, napi_callback_info info) {
  batch_socket *s = unwrap(env, info);
  if (s && !s->closing) flush(s);
  return NULL;
}

/* close(handle): stops reading and closes the socket; safe to call twice. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  batch_socket *s = unwrap(env, info);
  if (!s || s->closing) return NULL;
  s->closing = 1;
  /* Stopping takes the descriptor out of epoll, so it can close now: the port is free at once. */
  uv_poll_stop(&s->poll);
  close(s->fd);
  s->fd = -1;
  uv_close((uv_handle_t *)&s->poll, on_closed);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"flush", NULL, js_flush, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value batch, meta;
  napi_define_properties(env, exports, 3, props);
  napi_create_int32(env, BATCH, &batch);
  napi_create_int32(env, META_INTS, &meta);
  napi_set_named_property(env, exports, "BATCH", batch);
  napi_set_named_property(env, exports, "META_INTS", meta);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
