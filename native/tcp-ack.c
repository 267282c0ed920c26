/*
 * Acknowledges what a TCP socket received now rather than after Linux's delayed-ACK timer
 * (TCP_QUICKACK, which the kernel forgets again on its own: it is set after each read that
 * leaves answers to come). A server that does not turn Nagle's algorithm off (unbound over TLS)
 * holds back a second small answer until the first is acknowledged; with a delayed ACK that
 * was 15 to 45 ms for a pipelined DNS query. Elsewhere than Linux, ack() does nothing.
 */
#define NAPI_VERSION 8
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME tcp_ack
#endif
#include <node_api.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/* ack(fd) -> true when the option was set. */
static napi_value js_ack(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  int ok = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 1 && napi_get_value_int32(env, argv[0], &fd) == napi_ok && fd >= 0) {
#ifdef TCP_QUICKACK
    int one = 1;
    ok = setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one) == 0;
#endif
  }
  napi_value result;
  napi_get_boolean(env, ok, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"ack", NULL, js_ack, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 1, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
