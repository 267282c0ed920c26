/*
 * Batched UDP for Veil's udp:// listener: one recvmmsg(2) reads up to BATCH datagrams and one
 * JavaScript call handles them all; the answers JavaScript queued meanwhile leave in one
 * sendmmsg(2). node:dgram costs a system call, a libuv callback, an address string and a
 * JavaScript call per datagram, which on cache hits is most of the time a query takes.
 *
 * The same for the upstream side (connect): a socket connected to one server, on a port the
 * kernel picks at random; its answers are read in batches, and the queries JavaScript sends on
 * it are queued here and leave together, with the queries of every other such socket, right
 * after the batch of datagrams that caused them (or at the end of the event loop's turn). On a
 * loopback server each send(2) woke the server and handed it the CPU: one wake-up per batch
 * instead of one per query is most of what batching buys on two cores.
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
#include <stddef.h>
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
/* Bytes of datagrams a connected socket queues before it sends them at once. */
#define OUT_BYTES 16384

typedef struct batch_socket batch_socket;

/*
 * Per Node environment: the connected sockets with datagrams queued, the listening sockets, and
 * a word JavaScript reads (batchState): 1 while a batch is being handled, up to the sends that
 * follow it, so that what is queued then needs no later turn of the event loop to leave.
 */
typedef struct {
  batch_socket *queued;
  batch_socket *listeners;
  int32_t *in_batch;
  napi_ref in_batch_ref;
} env_state;

struct batch_socket {
  napi_env env;
  env_state *state;
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
  /* Connected (upstream) sockets only: the datagrams queued by send(). */
  int connected;
  int send_errno; /* an error a send met (the server's port closed): told on the next poll */
  batch_socket *next_queued;   /* in state->queued while out_count > 0 */
  batch_socket *next_listener; /* listening sockets: in state->listeners while open */
  int out_count;
  size_t out_used;
  /* The arrays below are written before they are read, so a new socket leaves them as malloc
   * gave them: zeroing these 30 KB was a quarter of what opening a connected socket cost, and
   * plain forwarding opens one every 64 queries (core/upstream/datagram.ts). Fields go above. */
  struct mmsghdr recv_msgs[BATCH];
  struct iovec recv_iov[BATCH];
  struct sockaddr_storage recv_addrs[BATCH];
  struct mmsghdr send_msgs[BATCH];
  struct iovec send_iov[BATCH];
  struct sockaddr_in6 send_addrs[BATCH];
  uint8_t out_data[OUT_BYTES];
};

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
  if (!s->send_meta) return; /* a connected socket: see flush_out */
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

static void on_readable(uv_poll_t *poll, int status, int events);

/* Sends what send() queued on a connected socket; a datagram the kernel refuses is dropped. */
static void flush_out(batch_socket *s) {
  int count = s->out_count;
  size_t offset = 0;
  for (int i = 0; i < count; i++) {
    struct msghdr *h = &s->send_msgs[i].msg_hdr;
    memset(h, 0, sizeof *h);
    h->msg_iov = &s->send_iov[i];
    h->msg_iovlen = 1;
    s->send_iov[i].iov_base = s->out_data + offset;
    offset += s->send_iov[i].iov_len;
  }
  int sent = 0;
  while (sent < count && !s->closing) {
    int n = sendmmsg(s->fd, s->send_msgs + sent, (unsigned)(count - sent), MSG_DONTWAIT);
    if (n > 0) {
      sent += n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      /* This datagram is dropped. A full buffer is UDP's lot (its query times out); an error
       * of the socket's (ICMP port unreachable from an earlier one) is told to JavaScript on
       * the next turn, through the poll, as a read would have told it. */
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && !s->send_errno) {
        s->send_errno = errno;
        uv_poll_start(&s->poll, UV_READABLE | UV_WRITABLE, on_readable);
      }
      sent++;
    }
  }
  s->out_count = 0;
  s->out_used = 0;
}

static void unqueue(batch_socket *s) {
  for (batch_socket **at = &s->state->queued; *at; at = &(*at)->next_queued) {
    if (*at == s) {
      *at = s->next_queued;
      break;
    }
  }
  s->next_queued = NULL;
}

/* Sends the queues of every connected socket of this environment. */
static void flush_queued(env_state *state) {
  while (state->queued) {
    batch_socket *s = state->queued;
    state->queued = s->next_queued;
    s->next_queued = NULL;
    flush_out(s);
  }
}

/*
 * After any batch: the queries it caused go upstream, and the answers it completed go to their
 * clients (a listener's answers to forwarded queries come in an upstream socket's batch).
 */
static void flush_everything(env_state *state) {
  flush_queued(state);
  for (batch_socket *l = state->listeners; l; l = l->next_listener) flush(l);
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
  if (s->send_errno) {
    int err = s->send_errno;
    s->send_errno = 0;
    uv_poll_start(&s->poll, UV_READABLE, on_readable);
    call_js(s, -err);
    return;
  }
  if (status < 0 || !(events & UV_READABLE)) {
    if (status < 0 && s->connected) {
      /* libuv says UV_EBADF for any POLLERR and stops polling: the socket's own error says why. */
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err == 0) err = -status;
      call_js(s, -err);
    }
    return;
  }
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
    if (n < 0 && s->connected && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      /* A connected socket's error is the server's (ICMP port unreachable): JavaScript is told. */
      call_js(s, -errno);
      return;
    }
    if (n <= 0) return; /* EAGAIN: drained; a listener's errors (ICMP reports) are not ours to act on */
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
    env_state *state = s->state;
    if (state->in_batch) *state->in_batch = 1;
    if (kept > 0) call_js(s, kept);
    /* What this batch caused leaves now, before the next batch is read. */
    flush_everything(state);
    if (state->in_batch) *state->in_batch = 0;
    if (n < BATCH) return;
  }
}

static void on_closed(uv_handle_t *handle) {
  batch_socket *s = handle->data;
  napi_env env = s->env;
  for (int i = 0; i < 4; i++)
    if (s->buffers[i]) napi_delete_reference(env, s->buffers[i]);
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

/* The call's first `count` arguments into argv (undefined where not given); false, with a TypeError thrown, when fewer than `required` came. */
static bool get_args(napi_env env, napi_callback_info info, napi_value *argv, size_t count, size_t required, const char *message) {
  size_t argc = count; /* slots past the arguments given are filled with undefined */
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < required) {
    napi_throw_type_error(env, NULL, message);
    return false;
  }
  return true;
}

/* The host (an IP literal) and port arguments as a socket address; 0 (a TypeError thrown) when they are not. */
static int socket_address(napi_env env, napi_value host_value, napi_value port_value, struct sockaddr_storage *addr, socklen_t *addr_len) {
  char host[64];
  size_t host_len;
  int32_t port = 0;
  if (napi_get_value_string_utf8(env, host_value, host, sizeof host, &host_len) != napi_ok) host[0] = '\0';
  if (napi_get_value_int32(env, port_value, &port) != napi_ok || port < 0 || port > 65535) {
    napi_throw_type_error(env, NULL, "udp-batch: port must be a number from 0 to 65535");
    return 0;
  }
  memset(addr, 0, sizeof *addr);
  struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *addr_len = sizeof *a4;
    return AF_INET;
  }
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *addr_len = sizeof *a6;
    return AF_INET6;
  }
  napi_throw_type_error(env, NULL, "udp-batch: host must be an IP literal");
  return 0;
}

/* Frees a socket that never started polling (its descriptor closed, its references dropped). */
static void discard(napi_env env, batch_socket *s) {
  if (s->fd >= 0) close(s->fd);
  for (int i = 0; i < 4; i++)
    if (s->buffers[i]) napi_delete_reference(env, s->buffers[i]);
  if (s->on_batch) napi_delete_reference(env, s->on_batch);
  if (s->self) napi_delete_reference(env, s->self);
  if (s->async_context) napi_async_destroy(env, s->async_context);
  free(s);
}

/*
 * What every socket has, listening or connected: the JavaScript object, the receive buffers
 * (recvData holds BATCH slots of equal size) and the batch callback. NULL, with an exception
 * pending, when one is missing or too small.
 */
static batch_socket *new_socket(napi_env env, napi_value self, napi_value recv_data, napi_value recv_meta, napi_value on_batch) {
  batch_socket *s = malloc(sizeof *s);
  if (!s) {
    throw_errno(env, "udp-batch", ENOMEM);
    return NULL;
  }
  memset(s, 0, offsetof(batch_socket, recv_msgs));
  s->env = env;
  s->fd = -1;
  size_t len;
  void *data;
  if (napi_get_instance_data(env, (void **)&s->state) != napi_ok || !s->state) {
    napi_throw_error(env, NULL, "udp-batch: no instance data");
    goto fail;
  }
  if (!get_buffer(env, recv_data, &s->buffers[0], &data, &len)) goto fail;
  s->recv_data = data;
  s->slot_bytes = len / BATCH;
  if (!get_buffer(env, recv_meta, &s->buffers[1], &data, &len)) goto fail;
  s->recv_meta = data;
  if (len < BATCH * META_INTS || s->slot_bytes < 512) {
    napi_throw_range_error(env, NULL, "udp-batch: a buffer is too small for a batch");
    goto fail;
  }
  if (napi_create_reference(env, on_batch, 1, &s->on_batch) != napi_ok) goto fail;
  if (napi_create_reference(env, self, 1, &s->self) != napi_ok) goto fail;
  napi_value resource_name;
  napi_create_string_utf8(env, "veil:udp-batch", NAPI_AUTO_LENGTH, &resource_name);
  if (napi_async_init(env, self, resource_name, &s->async_context) != napi_ok) goto fail;
  return s;
fail:
  discard(env, s);
  return NULL;
}

/* Closes and frees a socket whose set-up failed at a system call, and throws what errno says. */
static napi_value fail_with_errno(napi_env env, batch_socket *s, const char *what) {
  int err = errno;
  discard(env, s);
  return throw_errno(env, what, err);
}

/* Starts reading a bound or connected socket; answers [external handle, local port]. */
static napi_value start_polling(napi_env env, batch_socket *s, int family, const char *what) {
  struct sockaddr_storage local;
  socklen_t local_len = sizeof local;
  if (getsockname(s->fd, (struct sockaddr *)&local, &local_len) < 0) return fail_with_errno(env, s, what);
  int local_port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&local)->sin_port : ((struct sockaddr_in6 *)&local)->sin6_port);
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init_socket(loop, &s->poll, s->fd) != 0) {
    discard(env, s);
    napi_throw_error(env, NULL, "udp-batch: cannot poll the socket");
    return NULL;
  }
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  if (!s->connected) {
    s->next_listener = s->state->listeners;
    s->state->listeners = s;
  }
  napi_value handle, port_value, result;
  CHECK(env, napi_create_external(env, s, on_finalize, NULL, &handle));
  CHECK(env, napi_create_int32(env, local_port, &port_value));
  CHECK(env, napi_create_array_with_length(env, 2, &result));
  CHECK(env, napi_set_element(env, result, 0, handle));
  CHECK(env, napi_set_element(env, result, 1, port_value));
  return result;
}

/*
 * open(self, host, port, reusePort, receiveBufferBytes, recvData, recvMeta, sendData, sendMeta,
 *      onBatch) -> [external handle, bound port]
 * `host` is an IP literal; recvData holds BATCH slots of equal size.
 */
static napi_value js_open(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  if (!get_args(env, info, argv, 10, 10, "udp-batch: open takes 10 arguments")) return NULL;
  struct sockaddr_storage addr;
  socklen_t addr_len;
  int family = socket_address(env, argv[1], argv[2], &addr, &addr_len);
  if (!family) return NULL;
  bool reuse_port;
  int32_t receive_buffer;
  CHECK(env, napi_get_value_bool(env, argv[3], &reuse_port));
  CHECK(env, napi_get_value_int32(env, argv[4], &receive_buffer));

  batch_socket *s = new_socket(env, argv[0], argv[5], argv[6], argv[9]);
  if (!s) return NULL;
  size_t len;
  void *data;
  if (!get_buffer(env, argv[7], &s->buffers[2], &data, &len)) goto fail;
  s->send_data = data;
  s->send_bytes = len;
  if (!get_buffer(env, argv[8], &s->buffers[3], &data, &len)) goto fail;
  s->send_meta = data;
  if (len < 1 + BATCH * META_INTS) {
    napi_throw_range_error(env, NULL, "udp-batch: a buffer is too small for a batch");
    goto fail;
  }

  s->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) return fail_with_errno(env, s, "bind");
  int one = 1;
  if (reuse_port && setsockopt(s->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) return fail_with_errno(env, s, "bind");
  /* The kernel caps this at net.core.rmem_max; a smaller buffer is not an error. */
  setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  if (bind(s->fd, (struct sockaddr *)&addr, addr_len) < 0) return fail_with_errno(env, s, "bind");
  return start_polling(env, s, family, "bind");

fail:
  discard(env, s);
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
  if (s->next_queued || s->state->queued == s) unqueue(s);
  s->out_count = 0;
  for (batch_socket **at = &s->state->listeners; *at; at = &(*at)->next_listener) {
    if (*at == s) {
      *at = s->next_listener;
      break;
    }
  }
  /* Stopping takes the descriptor out of epoll, so it can close now: the port is free at once. */
  uv_poll_stop(&s->poll);
  close(s->fd);
  s->fd = -1;
  uv_close((uv_handle_t *)&s->poll, on_closed);
  return NULL;
}

/*
 * connect(self, host, port, receiveBufferBytes, recvData, recvMeta, onBatch[, localHost])
 *   -> [external handle, local port]
 * A UDP socket connected to host:port (an IP literal), bound by the kernel to a random free
 * port, on localHost when given (an IP literal of the same family: a relay leaves from its own
 * address). Its datagrams arrive as for open(); onBatch gets a negative count (-errno) when the
 * socket reports an error (the server's port is closed). recvData and recvMeta may be shared by
 * every connected socket: a batch is handed to JavaScript before the next is read.
 */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!get_args(env, info, argv, 8, 7, "udp-batch: connect takes 7 or 8 arguments")) return NULL;
  struct sockaddr_storage addr;
  socklen_t addr_len;
  int family = socket_address(env, argv[1], argv[2], &addr, &addr_len);
  if (!family) return NULL;
  struct sockaddr_storage local;
  socklen_t local_len = 0;
  napi_valuetype local_type;
  CHECK(env, napi_typeof(env, argv[7], &local_type));
  if (local_type == napi_string) {
    napi_value zero;
    CHECK(env, napi_create_int32(env, 0, &zero));
    int local_family = socket_address(env, argv[7], zero, &local, &local_len);
    if (!local_family) return NULL;
    if (local_family != family) {
      napi_throw_type_error(env, NULL, "udp-batch: the local address is not of the server's family");
      return NULL;
    }
  }
  int32_t receive_buffer;
  CHECK(env, napi_get_value_int32(env, argv[3], &receive_buffer));

  batch_socket *s = new_socket(env, argv[0], argv[4], argv[5], argv[6]);
  if (!s) return NULL;
  s->connected = 1;
  s->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) return fail_with_errno(env, s, "connect");
  if (receive_buffer > 0) setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  if (local_len > 0 && bind(s->fd, (struct sockaddr *)&local, local_len) < 0) return fail_with_errno(env, s, "bind");
  if (connect(s->fd, (struct sockaddr *)&addr, addr_len) < 0) return fail_with_errno(env, s, "connect");
  return start_polling(env, s, family, "connect");
}

/*
 * send(handle, datagram): queues a datagram on a connected socket. It leaves with the others
 * queued on connected sockets after the batch being handled, or at flushQueued(); a full queue
 * leaves at once. A datagram larger than the queue is refused (RangeError).
 */
static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  void *handle = NULL;
  void *data;
  size_t length;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || napi_get_value_external(env, argv[0], &handle) != napi_ok) {
    napi_throw_type_error(env, NULL, "udp-batch: send(handle, datagram)");
    return NULL;
  }
  batch_socket *s = handle;
  CHECK(env, napi_get_buffer_info(env, argv[1], &data, &length));
  if (!s->connected || s->closing) return NULL;
  if (length > OUT_BYTES) {
    napi_throw_range_error(env, NULL, "udp-batch: datagram too large");
    return NULL;
  }
  if (s->out_count == BATCH || s->out_used + length > OUT_BYTES) flush_out(s);
  memcpy(s->out_data + s->out_used, data, length);
  s->send_iov[s->out_count].iov_len = length;
  s->out_used += length;
  if (s->out_count++ == 0) {
    s->next_queued = s->state->queued;
    s->state->queued = s;
  }
  return NULL;
}

/* flushQueued(): sends what every connected socket has queued. */
static napi_value js_flush_queued(napi_env env, napi_callback_info info) {
  (void)info;
  env_state *state = NULL;
  if (napi_get_instance_data(env, (void **)&state) == napi_ok && state) flush_queued(state);
  return NULL;
}

/*
 * batchState(word): an Int32Array of one element, kept for the environment's life. Its value is
 * 1 from the moment a batch of datagrams is handed to JavaScript until what it caused has been
 * sent (every listener's queue and every connected socket's), else 0. A send seen while it is 1
 * is sure to leave with the batch; others need flush() or flushQueued() later.
 */
static napi_value js_batch_state(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, argv, 1, 1, "udp-batch: batchState(Int32Array of 1)")) return NULL;
  env_state *state = NULL;
  if (napi_get_instance_data(env, (void **)&state) != napi_ok || !state) {
    napi_throw_error(env, NULL, "udp-batch: no instance data");
    return NULL;
  }
  bool is_typed = false;
  napi_is_typedarray(env, argv[0], &is_typed);
  napi_typedarray_type type;
  size_t length = 0, offset;
  void *data = NULL;
  napi_value ab;
  if (!is_typed || napi_get_typedarray_info(env, argv[0], &type, &length, &data, &ab, &offset) != napi_ok || type != napi_int32_array || length != 1) {
    napi_throw_type_error(env, NULL, "udp-batch: batchState(Int32Array of 1)");
    return NULL;
  }
  if (state->in_batch_ref) napi_delete_reference(env, state->in_batch_ref);
  CHECK(env, napi_create_reference(env, argv[0], 1, &state->in_batch_ref));
  state->in_batch = data;
  *state->in_batch = 0;
  return NULL;
}

static void free_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  /* The word's reference is left to Node, which releases an environment's references as it ends. */
  free(data);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"flush", NULL, js_flush, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"flushQueued", NULL, js_flush_queued, NULL, NULL, NULL, napi_default, NULL},
      {"batchState", NULL, js_batch_state, NULL, NULL, NULL, napi_default, NULL},
  };
  env_state *state = calloc(1, sizeof *state);
  if (!state || napi_set_instance_data(env, state, free_state, NULL) != napi_ok) {
    free(state);
    napi_throw_error(env, NULL, "udp-batch: no memory for instance data");
    return NULL;
  }
  napi_value batch, meta;
  napi_define_properties(env, exports, 7, props);
  napi_create_int32(env, BATCH, &batch);
  napi_create_int32(env, META_INTS, &meta);
  napi_set_named_property(env, exports, "BATCH", batch);
  napi_set_named_property(env, exports, "META_INTS", meta);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
